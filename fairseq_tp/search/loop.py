"""The search loop: baseline, initial design, then proposals in batches.

Evaluation ``0`` is the uniform baseline, ``1..n_init`` the initial design
(evaluated in one objective call), the rest come from the strategy in batches
of ``batch`` proposals decoded together.  The budget counts every evaluated
schedule.  Batch boundaries depend only on (n_init, batch), and a batch's
proposals only on (seed, index, the results before the batch), which the
trial log replays on resume, so an interrupted search -- even one killed in
the middle of a batch -- continues exactly as an uninterrupted one would have.
"""
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple

from ..schedules import Schedule
from .objective_api import Objective, Score, mean_score, replicate_scores
from .optimiser import Observation, make_proposer
from ..errors import UsageError
from .space import ScheduleSpace
from .trial_log import Trial, TrialLog, locked

STRATEGIES = ("botorch", "random", "paper")
Strategy = Literal["botorch", "random", "paper"]


@dataclass
class SearchResult:
    best_schedule: Schedule
    best_bleu: float
    baseline_schedule: Schedule
    baseline_bleu: float
    evaluations: int
    trials: List[Trial]
    elapsed_s: float  # wall time of this run (a resumed run counts from its restart)
    objective_s: float  # objective seconds over all trials, replayed ones included
    optimiser_s: float  # proposal seconds over all trials
    proposal_optimiser_s: List[float] = field(default_factory=list)  # one per strategy proposal
    stopped_by: str = "budget"  # "budget", "time" or "exhausted" (every schedule evaluated)

    @property
    def improvement(self) -> float:
        return self.best_bleu - self.baseline_bleu


def default_n_init(space: ScheduleSpace) -> int:
    return max(2, 2 * space.dim)


@dataclass(frozen=True)
class SearchSettings:
    """How one search runs, checked when built (so a command line can check it before loading a model).

    ``n_init`` None means :func:`default_n_init` of the space.
    """

    budget: int
    seed: int
    strategy: Strategy
    n_init: Optional[int] = None
    time_budget_s: Optional[float] = None
    batch: int = 1  # proposals per batch after the initial design (the paper's strategy is sequential)

    def __post_init__(self):
        if not _is_int(self.budget) or self.budget < 1:
            raise UsageError(f"--budget must be a positive number of evaluations, got {self.budget!r}")
        if not _is_int(self.seed):
            raise UsageError(f"--seed must be an integer, got {self.seed!r}")
        if self.strategy not in STRATEGIES:
            raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.n_init is not None and (not _is_int(self.n_init) or self.n_init < 0):
            raise UsageError(f"--n-init must be a non-negative integer, got {self.n_init!r}")
        if self.time_budget_s is not None and not (isinstance(self.time_budget_s, (int, float))
                                                   and 0 < self.time_budget_s < math.inf):
            raise UsageError(f"--time-budget must be a positive number of seconds, got {self.time_budget_s!r}")
        if not _is_int(self.batch) or self.batch < 1:
            raise UsageError(f"--schedules-per-batch must be at least 1, got {self.batch!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def run_search(
    objective: Objective,
    space: ScheduleSpace,
    settings: SearchSettings,
    *,
    log_path: str,
    config: Dict[str, Any],
    resume: bool = False,
    progress: bool = True,
) -> SearchResult:
    """Search ``space`` for the schedule with the best ``objective`` score.

    ``config`` describes the search for the trial log header (checkpoint,
    data, decoding options...); resuming refuses a log whose config differs in
    anything but ``budget``/``time_budget_s``.
    """
    budget, seed, strategy = settings.budget, settings.seed, settings.strategy
    proposer = make_proposer(strategy, space, seed)  # first: a strategy's missing extra fails before any work
    n_init = proposer.default_n_init if settings.n_init is None and proposer.default_n_init is not None else (
        default_n_init(space) if settings.n_init is None else settings.n_init)
    batch = 1 if proposer.sequential else settings.batch
    search = {
        "seed": seed,
        "strategy": strategy,
        "num_timesteps": space.num_timesteps,
        "steps": space.steps,
        "free_first_step": space.free_first_step,
        "n_init": n_init,
    }
    if space.searched != "timesteps":  # absent for timesteps, as logs written before rates were
        search["searched"] = space.searched
    if batch > 1:  # absent for one at a time, as logs written before batches were
        search["batch"] = batch
    started = time.perf_counter()
    with locked(log_path), TrialLog.open(log_path, config, search, space.num_timesteps, resume) as log:
        run = _SearchSession(objective, space, log, proposer, budget, seed, n_init, batch, settings.time_budget_s,
                             started)
        from tqdm import tqdm  # imported by a search, not with the library

        with tqdm(
            total=budget,
            initial=min(len(log.trials), budget),
            desc="schedule search",
            unit="eval",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        ) as bar:
            run.bar = bar
            run.replay()
            run.evaluate_start()
            while run.may_continue():
                run.evaluate_batch()
        return run.result()


class _SearchSession:
    """State of one search session: the cache of evaluated schedules and the log."""

    def __init__(self, objective, space, log, proposer, budget, seed, n_init, batch, time_budget_s, started):
        self.objective, self.space, self.log, self.proposer = objective, space, log, proposer
        self.budget, self.seed, self.n_init, self.batch = budget, seed, n_init, batch
        self.time_budget_s, self.started = time_budget_s, started
        self.scores: Dict[Schedule, float] = {}  # the cache: each schedule is evaluated once
        self._plan: Optional[List[Schedule]] = None  # baseline + initial design, computed once
        self._plan_s = 0.0  # seconds it took
        self.bar = None  # tqdm's bar while a search runs
        self.stopped_by = "budget"

    @property
    def trials(self) -> List[Trial]:
        return self.log.trials

    # -- the three phases --------------------------------------------------
    def replay(self) -> None:
        expected = self._start_plan()
        for trial in self.trials:
            if not self.space.contains(trial.schedule) or trial.schedule in self.scores:
                raise UsageError(
                    f"trial log {self.log.path} has an unexpected schedule {trial.schedule} at index "
                    f"{trial.index}; remove it or choose another --log"
                )
            if trial.index < len(expected) and trial.schedule != expected[trial.index]:
                raise UsageError(
                    f"trial log {self.log.path} does not match this search's initial design at index "
                    f"{trial.index}; remove it or choose another --log"
                )
            self.scores[trial.schedule] = trial.bleu
        if self.trials:
            self._show_best()

    def evaluate_start(self) -> None:
        """The baseline and the initial design, in one objective call."""
        plan = self._start_plan()
        design_s = self._plan_s
        todo = plan[len(self.trials) : self.budget]
        if not todo:  # no time check: the baseline is always evaluated
            return
        scores, objective_s = self._evaluate(todo)
        for schedule, score in zip(todo, scores):
            is_baseline = len(self.trials) == 0
            self._record(
                schedule,
                score,
                source="baseline" if is_baseline else "initial",
                objective_s=objective_s / len(todo),
                optimiser_s=0.0 if is_baseline else design_s / max(1, len(plan) - 1),
            )

    def may_continue(self) -> bool:
        if self._spent() >= self.budget:
            self.stopped_by = "budget"
            return False
        if len(self.scores) >= self.space.size():
            self.stopped_by = "exhausted"
            return False
        if self._out_of_time():
            self.stopped_by = "time"
            return False
        return True

    def evaluate_batch(self) -> None:
        """The batch the next evaluation belongs to: proposed from the results before the batch, so a
        batch cut short by a kill is proposed again identically and only its missing part evaluated."""
        start = self._batch_start(len(self.trials))
        available = self.budget - self._spent(before=start)
        # A sequential proposer gets every unit left (it may spend some without an evaluation).
        count = available if self.proposer.sequential else min(self.batch, available, self.space.size() - start)
        t0 = time.perf_counter()
        proposals = self.proposer.propose(self._observations()[:start], start, count)
        optimiser_s = (time.perf_counter() - t0) / max(1, len(proposals))
        done = self.trials[start:]
        if [t.schedule for t in done] != proposals[: len(done)]:
            raise UsageError(
                f"trial log {self.log.path} does not match this search's proposals from index {start}; "
                f"remove it or choose another --log"
            )
        todo = proposals[len(done) :]
        repeated = [s for s in todo if s in self.scores]
        if repeated or len(set(todo)) != len(todo):  # proposers promise fresh schedules; a repeat is a bug
            raise RuntimeError(f"{self.proposer.name} proposed already evaluated schedule {(repeated or todo)[0]}")
        if not todo:
            return
        scores, objective_s = self._evaluate(todo)
        for schedule, score in zip(todo, scores):
            self._record(schedule, score, self.proposer.name, objective_s / len(todo), optimiser_s)

    # -- helpers --------------------------------------------------------------
    def _start_plan(self) -> List[Schedule]:
        """Baseline then initial design.  A bigger design starts with a smaller
        one (same Sobol sequence), so capping it by the budget and extending the
        budget later gives the same evaluations as one long run."""
        if self._plan is None:  # asked at replay, at the start and for every batch's boundary
            t0 = time.perf_counter()
            baseline = self.space.baseline()
            size = min(self.n_init, self.budget - 1, self.space.size() - 1)
            self._plan = [baseline] + self.space.initial_design(size, self.seed, exclude=[baseline])
            self._plan_s = time.perf_counter() - t0
        return self._plan

    def _observations(self) -> List[Observation]:
        return [(t.schedule, t.bleu) for t in self.trials]

    def _batch_start(self, index: int) -> int:
        """The first index of the proposal batch that evaluation ``index`` belongs to."""
        first = len(self._start_plan())
        return first + (index - first) // self.batch * self.batch

    def _spent(self, before: Optional[int] = None) -> int:
        """Budget used by the trials (before index ``before``), including what a strategy spent
        without an evaluation (the paper's proposals with a repeated step)."""
        observations = self._observations()[:before]
        return len(observations) + self.proposer.spent(observations)

    def _evaluate(self, schedules: Sequence[Schedule]):
        """((mean score, replicate scores or None) per schedule, seconds)."""
        t0 = time.perf_counter()
        scores = list(self.objective.evaluate(list(schedules)))
        objective_s = time.perf_counter() - t0
        if len(scores) != len(schedules):
            raise UsageError(f"the objective returned {len(scores)} scores for {len(schedules)} schedules")
        return [_checked(score, schedule) for schedule, score in zip(schedules, scores)], objective_s

    def _record(self, schedule, score, source, objective_s, optimiser_s) -> None:
        bleu, replicates = score
        trial = Trial(len(self.trials), schedule, bleu, source, objective_s, optimiser_s, time.time(), replicates)
        self.log.append(trial)
        self.scores[schedule] = bleu
        if self.bar is not None:
            self.bar.update(1)
        self._show_best()

    def _show_best(self) -> None:
        if self.bar is not None:
            best = _best(self.trials)
            baseline = self.trials[0]
            self.bar.set_postfix(best=f"{best.bleu:.2f}", baseline=f"{baseline.bleu:.2f}", refresh=False)

    def _out_of_time(self) -> bool:
        return self.time_budget_s is not None and time.perf_counter() - self.started >= self.time_budget_s

    def result(self) -> SearchResult:
        best, baseline = _best(self.trials), self.trials[0]
        proposals = [t for t in self.trials if t.source in STRATEGIES]  # one optimiser time per schedule
        return SearchResult(
            best_schedule=best.schedule,
            best_bleu=best.bleu,
            baseline_schedule=baseline.schedule,
            baseline_bleu=baseline.bleu,
            evaluations=len(self.trials),
            trials=list(self.trials),
            elapsed_s=time.perf_counter() - self.started,
            objective_s=sum(t.objective_s for t in self.trials),
            optimiser_s=sum(t.optimiser_s for t in self.trials),
            proposal_optimiser_s=[t.optimiser_s for t in proposals],
            stopped_by=self.stopped_by,
        )


def _checked(score: Score, schedule: Schedule) -> Tuple[float, Optional[Tuple[float, ...]]]:
    """(the mean, the replicate scores or None for a plain number)."""
    replicates = replicate_scores(score, schedule)
    return mean_score(score, schedule), (replicates if isinstance(score, (list, tuple)) else None)


def _best(trials: Sequence[Trial]) -> Trial:
    """Highest score; the earliest wins ties, so the baseline is kept unless beaten."""
    return max(trials, key=lambda t: (t.bleu, -t.index))
