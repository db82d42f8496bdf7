"""The search's own options: one dataclass, from which ``fairseq-tp-search``'s argparse options are
generated (fairseq's way), with the checks that need no model.  Defaults live here only."""
import os
from dataclasses import dataclass, field, fields
from typing import Dict, List, Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from ..errors import UsageError
from ..search import SEARCHED, STRATEGIES, SearchSettings
from ..search.front import check_target
from .bleu import BLEU_KINDS


@dataclass
class SearchConfig(FairseqDataclass):
    steps: Optional[str] = field(default=None, metadata={
        "help": "decoder passes of the schedule to find (N < T); several, e.g. 2,3,4,6,8, search each and "
                "choose the smallest N that reaches --target (the front over N)", "required": True})
    target: Optional[float] = field(default=None, metadata={
        "help": "with several --steps: the share of the all-steps few-shot BLEU the chosen N must keep "
                "(default 0.99)"})
    front_plot: Optional[str] = field(default=None, metadata={
        "help": "with several --steps: plot few-shot BLEU against N (searched, uniform, all steps) to FILE.png"})
    shots: str = field(default="20", metadata={
        "help": "validation sentences to score BLEU on, drawn with --seed from --gen-subset: a number or 'all'"})
    budget: int = field(default=40, metadata={
        "help": "schedules to evaluate, the uniform baseline and initial design included"})
    time_budget: Optional[float] = field(default=None, metadata={
        "help": "also stop after this many seconds (after the evaluation in flight)"})
    strategy: ChoiceEnum(STRATEGIES) = field(default="botorch", metadata={
        "help": "botorch (ours), random, or paper (the Temporal Pruning paper's scikit-optimize search, "
                "pip install 'fairseq-tp[paper]'), all at the same budget"})
    free_first_step: bool = field(default=False, metadata={
        "help": "search the first step too (default: fixed at T-1, the fully noised state)"})
    n_init: Optional[int] = field(default=None, metadata={
        "help": "size of the space-filling initial design (default 2 x free steps)"})
    bleu: ChoiceEnum(BLEU_KINDS) = field(default="sacrebleu", metadata={
        "help": "sacrebleu (detokenised, as --scoring sacrebleu) or tokenized "
                "(fairseq's compound_split_bleu.sh, as the papers report)"})
    schedules_per_batch: int = field(default=8, metadata={
        "help": "schedules proposed and decoded together after the initial design (botorch's sequential "
                "greedy q-batch; the paper's strategy proposes one at a time)"})
    replicates: Optional[int] = field(default=None, metadata={
        "help": "score each schedule as the mean BLEU over this many noise draws, the same draws for every "
                "schedule (default: 1 when decoding is deterministic, else 4)"})
    shot_seed: Optional[int] = field(default=None, metadata={
        "help": "seed that draws the shots (default --seed), so --seed can vary the noise alone"})
    min_confidence: float = field(default=0.0, metadata={
        "help": "keep the uniform schedule unless picking the best evaluated schedule beats it on the shots "
                "left out of a bootstrap resample in at least this share of 1,000 resamples (e.g. 0.8): a "
                "guard against schedules that only fit the few shots; 0 (default) always takes the best, "
                "as the paper"})
    search_space: ChoiceEnum(("auto",) + SEARCHED) = field(default="auto", metadata={
        "help": "what the search tunes: timesteps (the paper), rates (the share of tokens left noisy after each "
                "pass, timesteps kept uniform; RDM's reparam-* strategies only) or both; auto (default): rates under "
                "reparam-* strategies (timesteps for --strategy paper), timesteps otherwise"})
    confirm_top: int = field(default=5, metadata={
        "help": "after the search, decode this many best schedules and uniform on --confirm-shots further "
                "sentences of the subset (never the shots), choose the best there, and keep it only if the "
                "out-of-bag bootstrap of that choice passes --confirm-level; 0: no confirmation (the paper)"})
    confirm_shots: str = field(default="200", metadata={
        "help": "sentences for confirmation, drawn from the subset less the shots: a number or 'all' (the rest)"})
    confirm_level: float = field(default=0.9, metadata={
        "help": "share of bootstrap resamples in which the confirmed pick must beat uniform on the confirmation "
                "sentences the resample left out, else uniform is written"})
    output: str = field(default="schedule.json", metadata={
        "help": "schedule file for fairseq-generate --tp-schedule"})
    log: Optional[str] = field(default=None, metadata={
        "help": "trial log, one JSON line per evaluation (default: OUTPUT with .trials.jsonl)"})
    resume: bool = field(default=False, metadata={"help": "continue the search recorded in --log"})
    plot: Optional[str] = field(default=None, metadata={"help": "plot BLEU and steps per trial (FILE.png)"})
    process_group_timeout: float = field(default=1800.0, metadata={
        "help": "under torchrun: seconds a rank waits for the others before the job fails"})
    eval_subset: Optional[str] = field(default=None, metadata={
        "help": "afterwards decode all of this split with the uniform and the searched schedule"})

    @classmethod
    def from_namespace(cls, args) -> "SearchConfig":
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})

    @property
    def shot_count(self) -> Optional[int]:
        """The number of shots, None for the whole subset."""
        if str(self.shots) == "all":
            return None
        try:
            return int(self.shots)
        except ValueError:
            raise UsageError(f"--shots must be a positive number or 'all', got '{self.shots}'") from None

    @property
    def confirm_count(self) -> Optional[int]:
        """The number of confirmation sentences, None for the rest of the subset."""
        if str(self.confirm_shots) == "all":
            return None
        try:
            count = int(self.confirm_shots)
        except ValueError:
            count = 0
        if count < 2:
            raise UsageError(f"--confirm-shots must be a number >= 2 or 'all', got '{self.confirm_shots}'")
        return count

    @property
    def log_path(self) -> str:
        return self.log or os.path.splitext(self.output)[0] + ".trials.jsonl"

    def log_path_for(self, steps: int) -> str:
        """With several --steps, one trial log per N beside --log: LOG_STEM.steps4.jsonl."""
        return os.path.splitext(self.log_path)[0] + f".steps{steps}.jsonl"

    @property
    def steps_list(self) -> List[int]:
        """The numbers of steps to search, ascending."""
        try:
            steps = [int(n) for n in str(self.steps).split(",")]
        except ValueError:
            raise UsageError(f"--steps must be a number of steps or a list like 2,3,4, got '{self.steps}'") from None
        if len(set(steps)) != len(steps):
            raise UsageError(f"--steps lists a number of steps twice: {self.steps}")
        return sorted(steps)

    def output_paths(self) -> Dict[str, str]:
        """Every file the search writes, by option (one trial log per N with several --steps)."""
        several = len(self.steps_list) > 1
        paths = {"--output": self.output, "--plot": self.plot, "--front-plot": self.front_plot}
        if several:
            paths.update({f"--log (N = {n})": self.log_path_for(n) for n in self.steps_list})
        else:
            paths["--log"] = self.log_path
        return {flag: path for flag, path in paths.items() if path is not None}

    def check_outputs_against(self, inputs: Dict[str, str]) -> None:
        """One line unless every output is a distinct file, none of them one of ``inputs`` (option -> path),
        symbolic links resolved."""
        seen: Dict[str, str] = {}
        for flag, path in {**self.output_paths()}.items():
            real = os.path.realpath(path)
            clash = seen.get(real) or next((f for f, p in inputs.items() if os.path.realpath(p) == real), None)
            if clash:
                raise UsageError(f"{flag} {path} is also {clash}: give each output a file of its own, never an input")
            seen[real] = flag

    @property
    def front_target(self) -> float:
        return 0.99 if self.target is None else self.target

    def check(self, seed: int) -> SearchSettings:
        """Every check that needs no model, in one place; returns the library's search settings."""
        if self.steps is None:
            raise UsageError("--steps N is required")
        if min(self.steps_list) < 1:
            raise UsageError(f"--steps must be at least 1, got {self.steps}")
        several = len(self.steps_list) > 1
        if not several and (self.target is not None or self.front_plot is not None):
            raise UsageError("--target and --front-plot need several --steps (e.g. --steps 2,3,4,6)")
        if several:
            check_target(self.front_target)
        if several and self.plot is not None:
            raise UsageError("--plot draws one search; with several --steps use --front-plot")
        shots = self.shot_count
        if shots is not None and shots < 1:
            raise UsageError(f"--shots must be a positive number or 'all', got {self.shots}")
        if not 0 <= self.min_confidence < 1:
            raise UsageError(f"--min-confidence must be a share in [0, 1), got {self.min_confidence}")
        if several and self.min_confidence:
            raise UsageError("--min-confidence tests one searched schedule; use one --steps")
        if isinstance(self.confirm_top, bool) or not isinstance(self.confirm_top, int) or self.confirm_top < 0:
            raise UsageError(f"--confirm-top must be a non-negative integer, got {self.confirm_top}")
        if self.confirm_top:
            self.confirm_count  # noqa: B018 -- checks --confirm-shots
            if not 0.5 <= self.confirm_level < 1:
                raise UsageError(f"--confirm-level must be a share in [0.5, 1), got {self.confirm_level}")
            if self.min_confidence:
                raise UsageError("--min-confidence tests the pick on the shots; confirmation (on by default) tests "
                                 "it on other sentences at --confirm-level: add --confirm-top 0 to use "
                                 "--min-confidence")
        if self.replicates is not None and self.replicates < 1:
            raise UsageError(f"--replicates must be at least 1, got {self.replicates}")
        settings = SearchSettings(budget=self.budget, seed=seed, strategy=str(self.strategy),
                                  n_init=self.n_init, time_budget_s=self.time_budget,
                                  batch=self.schedules_per_batch)
        if settings.strategy == "paper":
            from ..search.paper import require_scikit_optimize
            require_scikit_optimize()
        for flag, path in self.output_paths().items():
            _check_writable(flag, path)
        self.check_outputs_against({})
        for flag, path in (("--plot", self.plot), ("--front-plot", self.front_plot)):
            if path is not None:
                _check_plot_format(flag, path)
        logs = [self.log_path_for(n) for n in self.steps_list] if several else [self.log_path]
        for log in logs:
            log_exists = os.path.exists(log) and os.path.getsize(log) > 0
            if log_exists and not self.resume:
                raise UsageError(f"trial log {log} already exists; resume it with --resume, remove it "
                                 f"or choose another --log")
            if log_exists and not os.access(log, os.R_OK):
                raise UsageError(f"--resume: cannot read trial log {log}")
        return settings


def required_options():
    """Option names argparse must require (FairseqDataclass has no notion of it without MISSING)."""
    return ["--" + f.name.replace("_", "-") for f in fields(SearchConfig) if f.metadata.get("required")]


def _check_plot_format(flag: str, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    extension = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if extension not in formats:
        raise UsageError(f"{flag} {path}: matplotlib cannot write .{extension} (use one of "
                         f"{', '.join(sorted(formats))})")


def _check_writable(flag: str, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{flag}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{flag}: cannot write to directory {directory}")
    if os.path.isdir(path):
        raise UsageError(f"{flag}: {path} is a directory")
