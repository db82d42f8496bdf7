"""Search a checkpoint's N-step schedule against few-shot BLEU: the Python API
behind ``fairseq-tp-search``.

``tune(cfg, options)`` takes fairseq's generation config (data, --path,
--gen-subset, batching, decoding options) and :class:`SearchOptions`, checks
everything it can before loading anything, loads the model, draws the shots,
runs :func:`fairseq_tp.search.run_search` and writes the schedule file.
"""
import ast
import hashlib
import logging
import os
import statistics
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from fairseq import checkpoint_utils, tasks

from .bleu import BLEU_KINDS, build_bleu
from .errors import UsageError
from .generator import DiffusionGenerator
from .objective import FewShotBleu, draw_shots
from .schedule import Schedule, ScheduleError, write_schedule_file
from .tasks.diffusion_translation import decoding_provenance
from .search import STRATEGIES, ScheduleSpace, SearchError, SearchResult, plot_trials, run_search

logger = logging.getLogger("fairseq_tp.tune")


@dataclass
class SearchOptions:
    steps: int
    shots: Optional[int] = 20  # None: the whole subset
    budget: int = 40
    time_budget_s: Optional[float] = None
    strategy: str = "botorch"
    free_first_step: bool = False
    n_init: Optional[int] = None
    bleu: str = "sacrebleu"
    schedules_per_batch: int = 8
    output: str = "schedule.json"
    log: Optional[str] = None  # default: beside the output
    resume: bool = False
    plot: Optional[str] = None
    eval_subset: Optional[str] = None
    progress: bool = True

    @property
    def log_path(self) -> str:
        return self.log or os.path.splitext(self.output)[0] + ".trials.jsonl"

    def check(self) -> None:
        """One-line errors for anything wrong before a model is loaded."""
        if self.steps < 1:
            raise UsageError(f"--steps must be at least 1, got {self.steps}")
        if self.shots is not None and self.shots < 1:
            raise UsageError(f"--shots must be a positive number or 'all', got {self.shots}")
        if self.budget < 1:
            raise UsageError(f"--budget must be at least 1 evaluation, got {self.budget}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise UsageError(f"--time-budget must be positive, got {self.time_budget_s}")
        if self.strategy not in STRATEGIES:
            raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, got '{self.strategy}'")
        if self.bleu not in BLEU_KINDS:
            raise UsageError(f"--bleu must be one of {', '.join(BLEU_KINDS)}, got '{self.bleu}'")
        if self.schedules_per_batch < 1:
            raise UsageError(f"--schedules-per-batch must be at least 1, got {self.schedules_per_batch}")
        for flag, path in (("--output", self.output), ("--log", self.log_path), ("--plot", self.plot)):
            if path is not None:
                _check_writable(flag, path)
        log_exists = os.path.exists(self.log_path) and os.path.getsize(self.log_path) > 0
        if log_exists and not self.resume:
            raise UsageError(f"trial log {self.log_path} already exists; resume it with --resume, remove it "
                             f"or choose another --log")
        if log_exists and not os.access(self.log_path, os.R_OK):
            raise UsageError(f"--resume: cannot read trial log {self.log_path}")


@dataclass
class SearchReport:
    result: SearchResult
    output: str
    log: str
    record: Dict[str, Any]  # what was written to the schedule file
    evaluation: Dict[str, Dict[str, float]] = field(default_factory=dict)  # --eval-subset rows


def _check_writable(flag: str, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{flag}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{flag}: cannot write to directory {directory}")
    if os.path.isdir(path):
        raise UsageError(f"{flag}: {path} is a directory")


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_diffusion_model(cfg, task, use_cuda: bool):
    path = cfg.common_eval.path
    if not path:
        raise UsageError("--path: give the checkpoint to search a schedule for")
    if os.pathsep in path:
        raise UsageError("--path: fairseq-tp-search tunes one checkpoint at a time (no ensembles)")
    if not os.path.isfile(path):
        raise UsageError(f"--path: checkpoint {path} does not exist")
    try:
        models, saved_cfg = checkpoint_utils.load_model_ensemble(
            [path], arg_overrides=ast.literal_eval(cfg.common_eval.model_overrides), task=task,
            suffix=cfg.checkpoint.checkpoint_suffix)
    except Exception as e:  # torch, pickle and fairseq all raise their own kinds
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise UsageError(f"--path: cannot load checkpoint {path}: {type(e).__name__}: {first_line}") from None
    model = models[0]
    if getattr(model, "diffusion", None) is None:
        arch = getattr(getattr(saved_cfg, "model", None), "_name", None) or "unknown"
        raise UsageError(f"--path: {path} is not a diffusion model (architecture '{arch}'); "
                         f"fairseq-tp-search needs a checkpoint trained with --task diffusion_translation")
    if cfg.common.fp16:
        model.half()
    if use_cuda:
        model.cuda()
    model.prepare_for_inference_(cfg)
    model.eval()
    return model, saved_cfg


@dataclass
class LoadedModel:
    """A diffusion checkpoint loaded for decoding with fairseq-generate's options."""

    cfg: Any
    task: Any
    model: Any
    saved_cfg: Any
    use_cuda: bool
    generator: DiffusionGenerator

    def subset(self, name: str):
        return load_subset(self.task, name, self.saved_cfg)

    def objective(self, dataset, sentence_ids, bleu, *, seed: int, schedules_per_batch: int = 8) -> FewShotBleu:
        cfg = self.cfg
        return FewShotBleu(self.model, self.generator, dataset, sentence_ids, bleu, seed=seed,
                           max_tokens=cfg.dataset.max_tokens, batch_size=cfg.dataset.batch_size,
                           schedules_per_batch=schedules_per_batch, post_process=cfg.common_eval.post_process,
                           decode_fn=text_post_processing(cfg, self.task), use_cuda=self.use_cuda)


def load_for_decoding(cfg) -> LoadedModel:
    """Task, model and generator from a fairseq generation config, every option checked."""
    use_cuda = torch.cuda.is_available() and not cfg.common.cpu
    if cfg.dataset.max_tokens is None and cfg.dataset.batch_size is None:
        cfg.dataset.max_tokens = 12000  # fairseq-generate's default
    task = tasks.setup_task(cfg.task)
    model, saved_cfg = load_diffusion_model(cfg, task, use_cuda)
    # The generator's own schedule only serves generate(); the objective names its schedules.
    placeholder = Schedule.uniform(1, model.diffusion.num_timesteps)
    generator = task.build_diffusion_generator(model, placeholder, task.decoding_options(cfg.generation),
                                               beam_size=int(cfg.generation.iter_decode_with_beam))
    return LoadedModel(cfg, task, model, saved_cfg, use_cuda, generator)


def load_subset(task, subset: str, saved_cfg):
    try:
        task.load_dataset(subset, task_cfg=saved_cfg.task)
    except FileNotFoundError as e:
        raise UsageError(f"--gen-subset: {e}") from None
    return task.dataset(subset)


def text_post_processing(cfg, task):
    """fairseq-generate's decode_fn: undo --bpe, then --tokenizer."""
    tokenizer = task.build_tokenizer(cfg.tokenizer)
    bpe = task.build_bpe(cfg.bpe)

    def decode_fn(text: str) -> str:
        if bpe is not None:
            text = bpe.decode(text)
        if tokenizer is not None:
            text = tokenizer.decode(text)
        return text

    return decode_fn


def tune(cfg, options: SearchOptions) -> SearchReport:
    options.check()
    loaded = load_for_decoding(cfg)
    T = loaded.model.diffusion.num_timesteps
    try:
        space = ScheduleSpace(T, options.steps, options.free_first_step)
    except ScheduleError as e:
        raise UsageError(f"--steps: {e}") from None

    subset = cfg.dataset.gen_subset
    dataset = loaded.subset(subset)
    if options.shots is not None and options.shots > len(dataset):
        raise UsageError(f"--shots {options.shots} is more than the {len(dataset)} sentences in subset '{subset}'")
    seed = int(cfg.common.seed)
    shot_ids = draw_shots(len(dataset), options.shots, seed)
    bleu = build_bleu(options.bleu)
    objective = loaded.objective(dataset, shot_ids, bleu, seed=seed, schedules_per_batch=options.schedules_per_batch)

    checkpoint_hash = sha256_of(cfg.common_eval.path)
    generator = loaded.generator
    provenance = decoding_provenance(generator.options, generator.beam_size, loaded.task.cfg.load_ema_weights)
    config = {
        "checkpoint_sha256": checkpoint_hash,
        "subset": subset,
        "subset_size": len(dataset),
        "shots": "all" if options.shots is None else options.shots,
        "shot_ids": shot_ids,
        "decoding": provenance,
        "scorer": bleu.signature,
        "batching": {"max_tokens": cfg.dataset.max_tokens, "batch_size": cfg.dataset.batch_size},
        "budget": options.budget,
        "time_budget_s": options.time_budget_s,
    }
    logger.info(f"searching {options.steps} steps of T = {T} on {len(shot_ids)} sentences of '{subset}' "
                f"({options.strategy}, budget {options.budget} evaluations, {bleu.signature})")
    try:
        result = run_search(objective, space, budget=options.budget, seed=seed, strategy=options.strategy,
                            log_path=options.log_path, config=config, resume=options.resume,
                            time_budget_s=options.time_budget_s, n_init=options.n_init, progress=options.progress)
    except SearchError as e:
        raise UsageError(str(e)) from None

    record = {
        "bleu": result.best_bleu,
        "uniform_bleu": result.baseline_bleu,
        "uniform_timesteps": list(result.baseline_schedule.timesteps),
        "shots": config["shots"],
        "shot_ids": shot_ids,
        "subset": subset,
        "seed": seed,
        "strategy": options.strategy,
        "evaluations": result.evaluations,
        "scorer": bleu.signature,
        "checkpoint": os.path.abspath(cfg.common_eval.path),
        "checkpoint_sha256": checkpoint_hash,
        "elapsed_s": round(result.elapsed_s, 3),
        "model_s": round(result.model_s, 3),
        "optimiser_s": round(result.optimiser_s, 3),
        "decoding": provenance,
    }
    report = SearchReport(result, options.output, options.log_path, record)
    if options.eval_subset:
        eval_dataset = loaded.subset(options.eval_subset)
        eval_objective = loaded.objective(eval_dataset, range(len(eval_dataset)), bleu, seed=seed,
                                          schedules_per_batch=options.schedules_per_batch)
        report.evaluation = time_schedules(
            eval_objective, {"uniform": result.baseline_schedule, "searched": result.best_schedule})
        record["eval"] = {"subset": options.eval_subset, **report.evaluation}
    write_schedule_file(options.output, result.best_schedule, **record)
    if options.plot:
        plot_trials(result.trials, space, options.plot)
    return report


def time_schedules(objective: FewShotBleu, schedules: Dict[str, Schedule], repeats: int = 3):
    """BLEU and median sentences/s of each schedule on the objective's sentences, decoding from
    scratch one schedule at a time; repeats interleave the schedules so drift hits them alike."""
    objective.translate([min(schedules.values(), key=lambda s: s.steps)])  # warm-up: no row pays first-call costs
    runs = {name: [] for name in schedules}
    for _ in range(repeats):
        for name, schedule in schedules.items():
            runs[name].append(objective.timed(schedule))
    return {name: {"timesteps": list(schedules[name].timesteps), "bleu": r[0][0],
                   "sents_per_s": statistics.median(speed for _, speed in r)} for name, r in runs.items()}


def summary_lines(report: SearchReport) -> List[str]:
    result = report.result
    proposals = result.proposal_optimiser_s
    median = f", median {statistics.median(proposals):.2f} s per proposal" if proposals else ""
    shots = report.record["shots"]
    lines = [
        f"{result.evaluations} schedules evaluated ({report.record['strategy']}, stopped by {result.stopped_by}) "
        f"on {len(report.record['shot_ids'])} sentences of '{report.record['subset']}' (shots: {shots}) "
        f"in {result.elapsed_s:.1f} s this run; all trials: decoding + BLEU {result.model_s:.1f} s, "
        f"optimiser {result.optimiser_s:.1f} s{median}",
        f"uniform  {str(result.baseline_schedule):>24}  BLEU {result.baseline_bleu:6.2f}",
        f"searched {str(result.best_schedule):>24}  BLEU {result.best_bleu:6.2f}  ({result.improvement:+.2f})",
    ]
    if report.evaluation:
        subset = report.record["eval"]["subset"]
        for name, row in report.evaluation.items():
            lines.append(f"{subset}: {name:8} {','.join(map(str, row['timesteps'])):>24}  BLEU {row['bleu']:6.2f}  "
                         f"{row['sents_per_s']:.1f} sentences/s")
    lines.append(f"wrote {report.output} (trial log {report.log})")
    return lines
