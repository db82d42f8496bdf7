"""The search's own options: one dataclass, from which ``fairseq-tp-search``'s argparse options are
generated (fairseq's way), with the checks that need no model.  Defaults live here only."""
import os
from dataclasses import dataclass, field, fields
from typing import Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from ..errors import UsageError
from ..search import STRATEGIES, SearchError, SearchSettings
from .bleu import BLEU_KINDS


@dataclass
class SearchConfig(FairseqDataclass):
    steps: Optional[int] = field(default=None, metadata={
        "help": "decoder passes of the schedule to find (N < T)", "required": True})
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
    output: str = field(default="schedule.json", metadata={
        "help": "schedule file for fairseq-generate --tp-schedule"})
    log: Optional[str] = field(default=None, metadata={
        "help": "trial log, one JSON line per evaluation (default: OUTPUT with .trials.jsonl)"})
    resume: bool = field(default=False, metadata={"help": "continue the search recorded in --log"})
    plot: Optional[str] = field(default=None, metadata={"help": "plot BLEU and steps per trial (FILE.png)"})
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
    def log_path(self) -> str:
        return self.log or os.path.splitext(self.output)[0] + ".trials.jsonl"

    def check(self, seed: int) -> SearchSettings:
        """Every check that needs no model, in one place; returns the library's search settings."""
        if self.steps is None:
            raise UsageError("--steps N is required")
        if self.steps < 1:
            raise UsageError(f"--steps must be at least 1, got {self.steps}")
        shots = self.shot_count
        if shots is not None and shots < 1:
            raise UsageError(f"--shots must be a positive number or 'all', got {self.shots}")
        if self.bleu not in BLEU_KINDS:
            raise UsageError(f"--bleu must be one of {', '.join(BLEU_KINDS)}, got '{self.bleu}'")
        if self.replicates is not None and self.replicates < 1:
            raise UsageError(f"--replicates must be at least 1, got {self.replicates}")
        try:
            settings = SearchSettings(budget=self.budget, seed=seed, strategy=str(self.strategy),
                                      n_init=self.n_init, time_budget_s=self.time_budget,
                                      batch=self.schedules_per_batch)
            if settings.strategy == "paper":
                from ..search.paper import require_scikit_optimize
                require_scikit_optimize()
        except SearchError as e:
            raise UsageError(str(e)) from None
        for flag, path in (("--output", self.output), ("--log", self.log_path), ("--plot", self.plot)):
            if path is not None:
                _check_writable(flag, path)
        log_exists = os.path.exists(self.log_path) and os.path.getsize(self.log_path) > 0
        if log_exists and not self.resume:
            raise UsageError(f"trial log {self.log_path} already exists; resume it with --resume, remove it "
                             f"or choose another --log")
        if log_exists and not os.access(self.log_path, os.R_OK):
            raise UsageError(f"--resume: cannot read trial log {self.log_path}")
        return settings


def required_options():
    """Option names argparse must require (FairseqDataclass has no notion of it without MISSING)."""
    return ["--" + f.name.replace("_", "-") for f in fields(SearchConfig) if f.metadata.get("required")]


def _check_writable(flag: str, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{flag}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{flag}: cannot write to directory {directory}")
    if os.path.isdir(path):
        raise UsageError(f"{flag}: {path} is a directory")
