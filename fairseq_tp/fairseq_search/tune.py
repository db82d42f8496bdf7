"""Search a checkpoint's N-step schedule against few-shot BLEU: the orchestration behind
``fairseq-tp-search`` (load, draw the shots, search, write the schedule file, evaluate).

``tune(cfg, search)`` takes fairseq's generation config (data, --path, --gen-subset, batching,
decoding options) and a :class:`SearchConfig`; it checks every option it can before loading
anything and the rest (subsets, N against T) right after loading, before any decoding.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch

from ..errors import UsageError
from ..schedules import Schedule, ScheduleError, decoding_record, write_schedule_file
from ..search import (Front, ScheduleSpace, SearchError, SearchResult, derive_seed, selection_confidence,
                      plot_front, plot_trials, run_search, search_front)
from . import distributed
from .bleu import build_bleu
from .config import SearchConfig
from .loading import load_for_decoding, sha256_of
from .objective import draw_shots
from . import timing

logger = logging.getLogger("fairseq_tp.search")
DEFAULT_REPLICATES = 4  # noise draws per schedule when decoding is stochastic
BOOTSTRAP_SAMPLES = 1000  # resamples of the shots for --min-confidence (~1-4 s of BLEU at 40 trials)


@dataclass
class SearchReport:
    result: SearchResult
    output: str
    log: str
    record: Dict[str, Any]  # what was written to the schedule file
    evaluation: Dict[str, Dict[str, float]] = field(default_factory=dict)  # --eval-subset rows
    front: Optional[Front] = None  # with several --steps
    guard: Optional[Dict[str, Any]] = None  # the --min-confidence test, when it ran
    chosen: Optional[Schedule] = None  # what was written: the searched schedule, or uniform kept by the guard


def tune(cfg, search: SearchConfig) -> Optional[SearchReport]:
    """The search; under torchrun, ranks other than 0 only decode their share and return None."""
    seed = int(cfg.common.seed)
    settings = search.check(seed)
    loaded = load_for_decoding(cfg)
    T = loaded.model.diffusion.num_timesteps
    try:
        spaces = {n: ScheduleSpace(T, n, search.free_first_step) for n in search.steps_list}
    except ScheduleError as e:
        raise UsageError(f"--steps: {e}") from None
    subset = cfg.dataset.gen_subset
    dataset = loaded.subset(subset, "--gen-subset")
    eval_dataset = loaded.subset(search.eval_subset, "--eval-subset") if search.eval_subset else None
    shots = search.shot_count
    if shots is not None and shots > len(dataset):
        raise UsageError(f"--shots {shots} is more than the {len(dataset)} sentences in subset '{subset}'")
    shot_seed = seed if search.shot_seed is None else search.shot_seed
    shot_ids = draw_shots(len(dataset), shots, shot_seed)
    bleu = build_bleu(search.bleu)
    generator = loaded.generator
    deterministic = loaded.model.diffusion.decodes_deterministically(generator.options)
    replicates = search.replicates or (1 if deterministic else DEFAULT_REPLICATES)
    replicates_why = ("given by --replicates" if search.replicates else
                      "default: decoding is deterministic" if deterministic else
                      f"default: decoding draws random numbers, so each schedule is scored over {replicates} "
                      f"noise draws")
    objective = loaded.objective(dataset, shot_ids, bleu, seed=seed, schedules_per_batch=search.schedules_per_batch,
                                 replicates=replicates)
    local_objective = objective  # rank 0 decodes the --min-confidence test alone
    objective.keep_sentence_statistics = bool(search.min_confidence)
    if distributed.world() > 1:
        if torch.distributed.get_rank() != 0:
            distributed.serve(objective)  # until rank 0 has finished searching
            return None
        objective = distributed.ShardedObjective(objective)

    checkpoint_hash = sha256_of(cfg.common_eval.path)
    decoding = decoding_record(generator.options, generator.beam_size, loaded.task.cfg.load_ema_weights,
                               generator.beam_within_length)
    shots_text = "all" if shots is None else shots
    config = {  # the trial log's header: a resumed search must match it (budgets aside)
        "checkpoint_sha256": checkpoint_hash,
        "subset": subset,
        "subset_size": len(dataset),
        "shots": shots_text,
        "shot_ids": shot_ids,
        "decoding": decoding,
        "scorer": bleu.signature,
        "batching": {"max_tokens": cfg.dataset.max_tokens, "batch_size": cfg.dataset.batch_size},
        "budget": settings.budget,
        "time_budget_s": settings.time_budget_s,
    }
    if replicates > 1:  # absent for one draw, as in logs written before replicates existed
        config["replicates"] = replicates
    logger.info(f"searching {search.steps} steps of T = {T} on {len(shot_ids)} sentences of '{subset}' "
                f"({settings.strategy}, budget {settings.budget} evaluations, {replicates} noise draw(s): "
                f"{replicates_why}; {bleu.signature})")
    front = None
    try:
        if len(spaces) == 1:
            space = next(iter(spaces.values()))
            result = run_search(objective, space, settings, log_path=search.log_path, config=config,
                                resume=search.resume, progress=not cfg.common.no_progress_bar)
        else:
            front = search_front(objective, T, list(spaces), settings, target=search.front_target,
                                 log_path=search.log_path_for, config=config, resume=search.resume,
                                 free_first_step=search.free_first_step, progress=not cfg.common.no_progress_bar)
            result, space = front.chosen.result, spaces[front.chosen.steps]
    except SearchError as e:
        raise UsageError(str(e)) from None
    if isinstance(objective, distributed.ShardedObjective):
        objective.close()  # the rest (evaluation, files) is rank 0's alone

    chosen, chosen_bleu, guard = result.best_schedule, result.best_bleu, None
    if search.min_confidence and result.best_schedule != result.baseline_schedule:
        guard = confidence_guard(local_objective, result, bleu, search.min_confidence, seed)
        if guard["kept_uniform"]:
            chosen, chosen_bleu = result.baseline_schedule, result.baseline_bleu
            logger.info(f"kept uniform {result.baseline_schedule}: the best-on-resample pick beat it on the "
                        f"left-out shots in {guard['confidence']:.1%} of bootstrap resamples, under "
                        f"--min-confidence {search.min_confidence}")
    record = {
        "bleu": chosen_bleu,
        "uniform_bleu": result.baseline_bleu,
        "uniform_timesteps": list(result.baseline_schedule.timesteps),
        "shots": shots_text,
        "shot_ids": shot_ids,
        "subset": subset,
        "seed": seed,
        "shot_seed": shot_seed,
        "replicates": replicates,
        "replicates_why": replicates_why,
        "strategy": settings.strategy,
        "evaluations": result.evaluations,
        "scorer": bleu.signature,
        "checkpoint": os.path.abspath(cfg.common_eval.path),
        "checkpoint_sha256": checkpoint_hash,
        "elapsed_s": round(result.elapsed_s, 3),
        "model_s": round(result.model_s, 3),
        "optimiser_s": round(result.optimiser_s, 3),
        "decoding": decoding,
    }
    if guard is not None:
        record["confidence_test"] = guard
    if front is not None:
        record.update(front_record(front))
    # Written as soon as the search ends, so nothing after it can lose the result.
    write_schedule_file(search.output, chosen, **record)
    log = search.log_path if front is None else search.log_path_for(front.chosen.steps)
    report = SearchReport(result, search.output, log, record, front=front, guard=guard, chosen=chosen)
    if eval_dataset is not None:
        eval_objective = loaded.objective(eval_dataset, range(len(eval_dataset)), bleu, seed=seed,
                                          schedules_per_batch=search.schedules_per_batch)
        report.evaluation = timing.time_schedules(
            eval_objective, {"uniform": result.baseline_schedule, "searched": chosen})
        record["eval"] = {"subset": search.eval_subset, **report.evaluation}
        write_schedule_file(search.output, chosen, **record)
    if search.plot:
        plot_trials(result.trials, space, search.plot)
    if search.front_plot:
        plot_front(front, search.front_plot)
    return report


def confidence_guard(objective, result: SearchResult, bleu, minimum: float, seed: int) -> Dict[str, Any]:
    """--min-confidence: the out-of-bag bootstrap of picking the best evaluated schedule on the shots,
    every evaluated schedule decoded again to get per-sentence statistics."""
    schedules = list(dict.fromkeys(t.schedule for t in result.trials))  # the baseline first
    test = selection_confidence(objective.sentence_statistics(schedules), bleu.from_statistics,
                                samples=BOOTSTRAP_SAMPLES, seed=derive_seed(seed, 0, "bootstrap"))
    return {"min_confidence": minimum, "confidence": test.ahead, "mean_left_out_gain": round(test.mean_gain, 4),
            "resamples": test.resamples, "kept_uniform": test.ahead < minimum,
            "searched_timesteps": list(result.best_schedule.timesteps), "searched_bleu": result.best_bleu}


def front_record(front: Front) -> Dict[str, Any]:
    """The front, as the schedule file records it beside the chosen N's schedule."""
    return {
        "target": front.target,
        "target_met": front.target_met,
        "all_steps": {"timesteps": list(front.reference_schedule.timesteps), "bleu": front.reference_bleu},
        "front": [{"steps": p.steps, "timesteps": list(p.result.best_schedule.timesteps), "bleu": p.result.best_bleu,
                   "share": p.share, "uniform_timesteps": list(p.result.baseline_schedule.timesteps),
                   "uniform_bleu": p.result.baseline_bleu, "uniform_share": p.uniform_share,
                   "evaluations": p.result.evaluations} for p in front.points],
    }
