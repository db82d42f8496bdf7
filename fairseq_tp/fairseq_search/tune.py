"""Search a checkpoint's N-step schedule against few-shot BLEU: the orchestration behind
``fairseq-tp-search`` (load, draw the shots, search, write the schedule file, evaluate).

``tune(cfg, search)`` takes fairseq's generation config (data, --path, --gen-subset, batching,
decoding options) and a :class:`SearchConfig`; it checks every option it can before loading
anything and the rest (subsets, N against T) right after loading, before any decoding.
"""
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import UsageError
from ..schedules import Schedule, decoding_record, write_schedule_file
from ..diffusion.decoding import check_schedule_rates, pass_rates
from ..search import (Confirmation, Front, ScheduleSpace, SearchResult, TrialLog, candidates,
                      choose_confirmed, derive_seed, read_confirmations, run_search,
                      search_front, selection_confidence, sentences_digest)
from ..search.front import choose, front_point
from ..search.trial_log import locked
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
    confirmation: Optional[Dict[str, Any]] = None  # what confirmation did (or why it was skipped)
    chosen: Optional[Schedule] = None  # what was written: the searched schedule, or uniform kept by the guard


def tune(cfg, search: SearchConfig) -> Optional[SearchReport]:
    """The search; under torchrun, ranks other than 0 only decode their share and return None."""
    seed = int(cfg.common.seed)
    settings = search.check(seed)
    for directory in str(cfg.task.data).split(os.pathsep):
        if not os.path.isdir(directory):
            raise UsageError(f"data directory {directory} does not exist")
    search.check_outputs_against(input_files(cfg))
    run = prepare(cfg, search, settings, seed)
    if distributed.world() > 1:
        if torch.distributed.get_rank() != 0:
            distributed.serve(run.objective, run.confirmation_objective)  # until rank 0 has searched and confirmed
            return None
        run.objective = distributed.ShardedObjective(run.objective, run.confirmation_objective)
    logger.info(f"searching {search.steps} steps of T = {run.T} on {len(run.shot_ids)} sentences of '{run.subset}' "
                f"({settings.strategy}, budget {settings.budget} evaluations, {run.replicates} noise draw(s): "
                f"{run.replicates_why}; {run.bleu.signature})")  # rank 0's line alone under torchrun
    found = search_and_confirm(run, search, settings)
    if isinstance(run.objective, distributed.ShardedObjective):
        run.objective.close()  # the rest (evaluation, files) is rank 0's alone
    guard = None
    if search.min_confidence and found.result.best_schedule != found.result.baseline_schedule:
        guard = confidence_guard(run.local_objective, found.result, run.bleu, search.min_confidence, seed)
        if guard["kept_uniform"]:
            found.chosen, found.chosen_bleu = found.result.baseline_schedule, found.result.baseline_bleu
            logger.info(f"kept uniform {found.result.baseline_schedule}: the best-on-resample pick beat it on the "
                        f"left-out shots in {guard['confidence']:.1%} of bootstrap resamples, under "
                        f"--min-confidence {search.min_confidence}")
    record = schedule_record(cfg, run, found, guard)
    # Written as soon as the search ends, so nothing after it can lose the result.
    write_output(search.output, found.chosen, record)
    report = SearchReport(found.result, search.output, found.log, record, front=found.front, guard=guard,
                          chosen=found.chosen, confirmation=found.confirmation)
    if run.eval_dataset is not None:
        evaluate_on_subset(report, run, search)
    if search.plot:
        from ..search.plot import plot_trials
        plot_trials(found.result.trials, found.space, search.plot, read_confirmations(found.log, run.T))
    if search.front_plot:
        from ..search.plot import plot_front
        plot_front(found.front, search.front_plot)
    return report


@dataclass
class PreparedSearch:
    """Everything a search needs once the model is loaded and the shots are drawn."""
    loaded: Any
    T: int
    seed: int
    spaces: Dict[int, ScheduleSpace]  # per N
    searched: str  # what the search varies: timesteps or rates
    curve: Optional[Callable[[int], Tuple[float, ...]]]  # the strategy's rates per N, where rates are searched
    subset: str
    dataset: Any
    eval_dataset: Any
    shot_ids: List[int]
    shot_seed: int
    bleu: Any
    replicates: int
    replicates_why: str
    strategy: str
    progress: bool  # tqdm bars on stderr
    objective: Any  # the shots' FewShotBleu (a ShardedObjective on rank 0 under torchrun)
    local_objective: Any  # this process's own (rank 0 decodes the --min-confidence test alone)
    confirm_ids: List[int]
    confirmation_objective: Any
    config: Dict[str, Any]  # the trial log's header
    skip: bool


def prepare(cfg, search: SearchConfig, settings, seed: int) -> PreparedSearch:
    """Load the model, check N against T and the subsets, draw the shots, build the objectives."""
    loaded = load_for_decoding(cfg)
    T = loaded.model.diffusion.num_timesteps
    searched = searched_space(loaded, search.search_space, settings.strategy)
    curve = (lambda n: strategy_rates(loaded, n)) if searched != "timesteps" else None
    try:
        spaces = {n: ScheduleSpace(T, n, search.free_first_step, searched, curve(n) if curve else None)
                  for n in search.steps_list}
    except UsageError as e:
        raise UsageError(f"--steps: {e}") from None
    subset = cfg.dataset.gen_subset
    dataset = loaded.subset(subset, "--gen-subset")
    eval_dataset = loaded.subset(search.eval_subset, "--eval-subset") if search.eval_subset else None
    shots = search.shot_count
    if shots is not None and shots > len(dataset):
        raise UsageError(f"--shots {shots} is more than the {len(dataset)} sentences in subset '{subset}'")
    shot_seed = seed if search.shot_seed is None else search.shot_seed
    skip = bool(cfg.dataset.skip_invalid_size_inputs_valid_test)
    shot_ids = decodable(loaded, dataset, draw_shots(len(dataset), shots, shot_seed), subset, skip)
    bleu = build_bleu(search.bleu)
    deterministic = loaded.model.diffusion.decodes_deterministically(loaded.generator.options)
    replicates = search.replicates or (1 if deterministic else DEFAULT_REPLICATES)
    replicates_why = ("given by --replicates" if search.replicates else
                      "default: decoding is deterministic" if deterministic else
                      f"default: decoding draws random numbers, so each schedule is scored over {replicates} "
                      f"noise draws")
    shard = distributed.shard()
    objective = loaded.objective(dataset, shot_ids, bleu, seed=seed, schedules_per_batch=search.schedules_per_batch,
                                 replicates=replicates, shard=shard,
                                 keep_sentence_statistics=bool(search.min_confidence))
    confirm_ids = decodable(loaded, dataset, confirmation_sentences(len(dataset), shot_ids, search, shot_seed), subset,
                            skip)
    confirmation_objective = loaded.objective(dataset, confirm_ids, bleu, seed=seed,
                                              schedules_per_batch=search.schedules_per_batch,
                                              replicates=replicates, shard=shard) if confirm_ids else None
    config = {  # the trial log's header: a resumed search must match it (budgets aside)
        "checkpoint_sha256": sha256_of(cfg.common_eval.path),
        "subset": subset,
        "subset_size": len(dataset),
        "shots": "all" if shots is None else shots,
        "shot_ids": shot_ids,
        "decoding": decoding_record(loaded.generator.options, loaded.generator.beam_size,
                                    loaded.task.cfg.load_ema_weights, loaded.generator.beam_within_length),
        "scorer": bleu.signature,
        "batching": {"max_tokens": cfg.dataset.max_tokens, "batch_size": cfg.dataset.batch_size},
        "budget": settings.budget,
        "time_budget_s": settings.time_budget_s,
    }
    if replicates > 1:  # absent for one draw, as in logs written before replicates existed
        config["replicates"] = replicates
    return PreparedSearch(loaded, T, seed, spaces, searched, curve, subset, dataset, eval_dataset, shot_ids,
                          shot_seed, bleu, replicates, replicates_why, settings.strategy, not cfg.common.no_progress_bar,
                          objective, objective, confirm_ids, confirmation_objective, config, skip)


@dataclass
class FoundSchedule:
    result: SearchResult  # the search of the chosen N
    space: ScheduleSpace
    front: Optional[Front]
    confirmation: Optional[Dict[str, Any]]
    chosen: Schedule  # what the schedule file gets
    chosen_bleu: float
    log: str  # the chosen N's trial log


def search_and_confirm(run: PreparedSearch, search: SearchConfig, settings) -> FoundSchedule:
    """The search (one N, or the front over several), then the confirmation, with the trial logs locked."""
    front = None
    logs = [search.log_path_for(n) for n in run.spaces] if len(run.spaces) > 1 else [search.log_path]
    with contextlib.ExitStack() as held:  # the trial logs stay locked through search and confirmation
        for path in logs:
            held.enter_context(locked(path))
        if len(run.spaces) == 1:
            space = next(iter(run.spaces.values()))
            result = run_search(run.objective, space, settings, log_path=search.log_path, config=run.config,
                                resume=search.resume, progress=run.progress)
        else:
            front = search_front(run.objective, run.T, list(run.spaces), settings, target=search.front_target,
                                 log_path=search.log_path_for, config=run.config, resume=search.resume,
                                 free_first_step=search.free_first_step,
                                 progress=run.progress, searched=run.searched,
                                 curve=run.curve)
            result, space = front.chosen.result, run.spaces[front.chosen.steps]
        chosen, chosen_bleu, confirmation = result.best_schedule, result.best_bleu, None
        if search.confirm_top:
            sharded = run.objective if isinstance(run.objective, distributed.ShardedObjective) else \
                run.confirmation_objective
            front, result, space, confirmation, confirmed = confirm_choice(
                sharded, run.confirm_ids, front, result, space, run.spaces, run.bleu, search, run.T, run.seed)
            if confirmed is not None:
                chosen = confirmed
                chosen_bleu = next(t.bleu for t in result.trials if t.schedule == chosen)
        log = search.log_path if front is None else search.log_path_for(front.chosen.steps)
    return FoundSchedule(result, space, front, confirmation, chosen, chosen_bleu, log)


def schedule_record(cfg, run: PreparedSearch, found: FoundSchedule, guard) -> Dict[str, Any]:
    """What the schedule file says besides the schedule."""
    result = found.result
    record = {
        "bleu": found.chosen_bleu,
        "uniform_bleu": result.baseline_bleu,
        "uniform_timesteps": list(result.baseline_schedule.timesteps),
        "shots": run.config["shots"],
        "shot_ids": run.shot_ids,
        "subset": run.subset,
        "seed": run.seed,
        "shot_seed": run.shot_seed,
        "replicates": run.replicates,
        "replicates_why": run.replicates_why,
        "strategy": run.strategy,
        "evaluations": result.evaluations,
        "scorer": run.bleu.signature,
        "checkpoint": os.path.abspath(cfg.common_eval.path),
        "checkpoint_sha256": run.config["checkpoint_sha256"],
        "search_space": run.searched,
        "searched_bleu": result.best_bleu,
        "searched": result.best_schedule.to_dict(),
        "elapsed_s": round(result.elapsed_s, 3),
        "objective_s": round(result.objective_s, 3),
        "optimiser_s": round(result.optimiser_s, 3),
        "decoding": run.config["decoding"],
    }
    if guard is not None:
        record["confidence_test"] = guard
    if found.confirmation is not None:
        record["confirmation"] = found.confirmation
    if found.front is not None:
        record.update(front_record(found.front))
    return record


def evaluate_on_subset(report: SearchReport, run: PreparedSearch, search: SearchConfig) -> None:
    """--eval-subset: uniform and the written schedule timed and scored there; the schedule file gains it."""
    eval_ids = decodable(run.loaded, run.eval_dataset, range(len(run.eval_dataset)), search.eval_subset, run.skip)
    eval_objective = run.loaded.objective(run.eval_dataset, eval_ids, run.bleu, seed=run.seed,
                                          schedules_per_batch=search.schedules_per_batch)
    report.evaluation = timing.time_schedules(
        eval_objective, {"uniform": report.result.baseline_schedule, "searched": report.chosen},
        progress=f"timing on '{search.eval_subset}'" if run.progress else None)
    report.record["eval"] = {"subset": search.eval_subset, **report.evaluation}
    write_output(search.output, report.chosen, report.record)


def write_output(path: str, schedule: Schedule, record: Dict[str, Any]) -> None:
    """The schedule file, atomically: a failed write (a full disk) leaves the old file or none."""
    try:
        write_schedule_file(path, schedule, **record)
    except OSError as e:
        raise UsageError(f"--output: cannot write {path}: {e.strerror or e}") from None


def decodable(loaded, dataset, ids, subset: str, skip: bool) -> List[int]:
    """``ids`` whose source fits the model's positions; one line for the first that does not, or (fairseq's
    --skip-invalid-size-inputs-valid-test) a warning saying how many were left out."""
    limit = loaded.model.encoder.max_positions()
    too_long = [i for i in ids if dataset.src_sizes[i] > limit]
    if too_long and not skip:
        first = too_long[0]
        raise UsageError(f"sentence {first} of '{subset}' has {dataset.src_sizes[first]} source tokens, more than the "
                         f"model's {limit} positions (--skip-invalid-size-inputs-valid-test leaves such sentences out)")
    if too_long:
        logger.warning(f"left out {len(too_long)} sentence(s) of '{subset}' longer than the model's {limit} positions")
    return [i for i in ids if dataset.src_sizes[i] <= limit]


def input_files(cfg) -> Dict[str, str]:
    """What the search reads (option -> path): the checkpoint(s) and every file of the data directories."""
    inputs = {"--path": path for path in str(cfg.common_eval.path).split(os.pathsep) if path}
    for directory in str(cfg.task.data).split(os.pathsep):
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                inputs[f"the data file {name}"] = os.path.join(directory, name)
    return inputs


def searched_space(loaded, requested: str, strategy: str) -> str:
    """--search-space, with auto resolved (rates under RDM's reparam-* strategies, except for the paper's search,
    which is of timesteps; else timesteps) and rates refused in one line where decoding cannot honour them."""
    options, continuous = loaded.generator.options, loaded.model.diffusion.continuous
    if requested == "auto":
        rates = options.reparam is not None and not continuous and options.rate_from == "pass-index"
        return "rates" if rates and strategy != "paper" else "timesteps"
    if requested != "timesteps":
        try:
            check_schedule_rates(options, continuous)
        except ValueError as e:
            raise UsageError(f"--search-space {requested}: {e}") from None
    return requested


def strategy_rates(loaded, steps: int) -> Tuple[float, ...]:
    """The decoding strategy's own rates for ``steps`` uniform passes (the baseline's, in a rates space)."""
    T = loaded.model.diffusion.num_timesteps
    targets = torch.tensor([Schedule.uniform(steps, T).targets()])
    return tuple(pass_rates(loaded.generator.options.reparam, None, "pass-index", targets, T)[0].tolist())


def confirmation_sentences(subset_size: int, shot_ids, search: SearchConfig, shot_seed: int) -> List[int]:
    """The --confirm-shots sentence ids beside the shots (every rank draws the same); [] when there is no
    confirmation or fewer than 2 sentences are left."""
    taken = set(shot_ids)
    rest = [i for i in range(subset_size) if i not in taken]
    if not search.confirm_top or len(rest) < 2:
        return []
    count = search.confirm_count
    if count is None or count >= len(rest):
        return rest
    return [rest[i] for i in draw_shots(len(rest), count, derive_seed(shot_seed, 0, "confirm"))]


def mean_bleu(bleu, statistics) -> float:
    """Corpus BLEU of one schedule's per-sentence statistics [sentences, draws, k], averaged over noise draws."""
    return float(np.mean([bleu.from_statistics([int(x) for x in draw]) for draw in statistics.sum(axis=0)]))


def confirm(objective, ids: List[int], result: SearchResult, bleu, search: SearchConfig, log: str, T: int,
            space: ScheduleSpace, seed: int) -> Tuple[Dict[str, Any], Optional[Schedule]]:
    """Decode the best --confirm-top schedules and uniform on the confirmation sentences ``ids`` (``objective``
    scores them, sharded under torchrun) and choose (fairseq_tp.search.confirm); each candidate's statistics
    go to the trial log as they finish.  Returns the record and the chosen schedule (None when skipped)."""
    if not ids:
        logger.info("confirmation skipped: the shots are the whole subset")
        return {"skipped": "no sentences left beside the shots"}, None
    schedules = candidates(result.trials, search.confirm_top, space)
    if len(schedules) < 2:
        logger.info("confirmation skipped: the search evaluated no schedule besides uniform")
        return {"skipped": "the search evaluated no schedule besides uniform"}, None
    digest = sentences_digest(ids)
    done = {c.schedule: c for c in read_confirmations(log, T) if c.sentences == digest}
    todo = [s for s in schedules if s not in done]
    logger.info(f"confirming the best {len(schedules) - 1} schedules and uniform on {len(ids)} other sentences "
                f"({len(schedules) - len(todo)} already in the trial log)")
    started = time.perf_counter()
    if todo:
        with TrialLog.append_to(log) as trial_log:
            for start in range(0, len(todo), search.schedules_per_batch):
                chunk = todo[start:start + search.schedules_per_batch]
                t0 = time.perf_counter()
                statistics = objective.sentence_statistics(chunk)
                seconds = (time.perf_counter() - t0) / len(chunk)
                for schedule, stats in zip(chunk, statistics):
                    score = mean_bleu(bleu, stats)
                    done[schedule] = Confirmation(schedule, score, digest, stats.tolist(), seconds, time.time())
                    trial_log.append_confirmation(done[schedule])
    statistics = np.array([done[s].statistics for s in schedules], dtype=np.int64)
    confirmed = choose_confirmed(statistics, schedules, bleu.from_statistics, level=search.confirm_level,
                                 seed=derive_seed(seed, 0, "confirm-bootstrap"))
    few_shot = {t.schedule: t.bleu for t in result.trials}
    logger.info(f"confirmation: {'kept uniform' if confirmed.kept_uniform else 'chose ' + str(confirmed.chosen)}: "
                f"{confirmed.why}")
    return {
        "top": search.confirm_top,
        "level": search.confirm_level,
        "sentence_ids": ids,
        "candidates": [{**s.to_dict(), "few_shot_bleu": few_shot[s], "bleu": b}
                       for s, b in zip(schedules, confirmed.bleu)],
        "best": confirmed.best,
        "chosen": 0 if confirmed.kept_uniform else confirmed.best,
        "kept_uniform": confirmed.kept_uniform,
        "why": confirmed.why,
        "gain": round(confirmed.bleu[confirmed.best] - confirmed.bleu[0], 4),
        "confidence": confirmed.confidence,
        "mean_left_out_gain": round(confirmed.mean_left_out_gain, 4),
        "left_out_gain_interval": [round(g, 4) for g in confirmed.gain_interval],
        "resamples": confirmed.resamples,
        "seconds": round(time.perf_counter() - started, 3),
    }, confirmed.chosen


def confirm_choice(objective, ids, front, result, space, spaces, bleu, search: SearchConfig, T: int, seed: int):
    """Confirmation of one search, or of every N of a front: (front, result and space of the chosen N, the
    confirmation record, the confirmed schedule or None)."""
    if front is None:
        record, confirmed = confirm(objective, ids, result, bleu, search, search.log_path, T, space, seed)
        return None, result, space, record, confirmed
    front, record, confirmed = confirm_front(objective, ids, front, spaces, bleu, search, T, seed)
    return front, front.chosen.result, spaces[front.chosen.steps], record, confirmed


def confirm_front(objective, ids: List[int], front: Front, spaces, bleu, search: SearchConfig, T: int, seed: int):
    """With several --steps: confirm every N, then choose N again from shares of the all-steps BLEU on the
    confirmation sentences (what each N writes there / all T steps there).  An N whose search evaluated only
    uniform writes uniform, decoded there beside the all-steps reference.  Returns (front, the chosen N's
    confirmation record with the per-N shares, its schedule)."""
    if not ids:
        return front, {"skipped": "no sentences left beside the shots"}, None
    confirmed = {p.steps: confirm(objective, ids, p.result, bleu, search, search.log_path_for(p.steps), T,
                                  spaces[p.steps], seed) for p in front.points}
    unconfirmed = [p.result.baseline_schedule for p in front.points if "skipped" in confirmed[p.steps][0]]
    decoded = list(dict.fromkeys([front.reference_schedule, *unconfirmed]))  # N = T's uniform is the reference
    # one at a time: schedules decoded together must share N
    scores = {s: mean_bleu(bleu, objective.sentence_statistics([s])[0]) for s in decoded}
    reference = scores[front.reference_schedule]
    points = []
    for p in front.points:
        record, pick = confirmed[p.steps]
        if "skipped" in record:
            uniform = scores[p.result.baseline_schedule]
            points.append(front_point(p.steps, p.result, p.result.baseline_schedule, uniform, uniform, reference))
        else:
            points.append(front_point(p.steps, p.result, pick, record["candidates"][record["chosen"]]["bleu"],
                                      record["candidates"][0]["bleu"], reference))
    chosen, met = choose(points, front.target)
    record, schedule = confirmed[chosen.steps]
    record = {**record, "front": {"all_steps_bleu": reference, "shares": {p.steps: p.share for p in points},
                                  "uniform_shares": {p.steps: p.uniform_share for p in points}}}
    return Front(front.reference_schedule, reference, points, front.target, chosen, met, "confirmation"), record, \
        schedule


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
    """The front, as the schedule file records it beside the chosen N's schedule: per N what it writes and the
    uniform schedule, their BLEU and shares where the front was measured (``shares_from``), and its search."""
    return {
        "shares_from": front.measured_on,
        "target": front.target,
        "target_met": front.target_met,
        "all_steps": {"timesteps": list(front.reference_schedule.timesteps), "bleu": front.reference_bleu},
        "front": [{"steps": p.steps, **p.schedule.to_dict(), "bleu": p.bleu, "share": p.share,
                   "uniform_timesteps": list(p.result.baseline_schedule.timesteps), "uniform_bleu": p.uniform_bleu,
                   "uniform_share": p.uniform_share,
                   "searched": {**p.result.best_schedule.to_dict(), "few_shot_bleu": p.result.best_bleu,
                                "uniform_few_shot_bleu": p.result.baseline_bleu},
                   "evaluations": p.result.evaluations} for p in front.points],
    }
