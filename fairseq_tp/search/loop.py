"""The search loop: baseline, initial design, then one proposal at a time.

Evaluation ``0`` is the uniform baseline, ``1..n_init`` the initial design
(evaluated in one objective call), the rest come from the strategy.  The
budget counts them all.  Everything a later evaluation depends on is a
function of (seed, index, earlier results), and earlier results are replayed
from the trial log on resume, so an interrupted search continues exactly as an
uninterrupted one would have.
"""
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional, Sequence

from tqdm import tqdm

from ..schedules import Schedule
from .objective_api import Objective
from .optimiser import Observation, make_proposer
from .space import ScheduleSpace, SearchError
from .trial_log import Trial, TrialLog

STRATEGIES = ("botorch", "random")
Strategy = Literal["botorch", "random"]


@dataclass
class SearchResult:
    best_schedule: Schedule
    best_bleu: float
    baseline_schedule: Schedule
    baseline_bleu: float
    evaluations: int
    trials: List[Trial]
    elapsed_s: float  # wall time of this run (a resumed run counts from its restart)
    model_s: float  # objective seconds over all trials, replayed ones included
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

    def __post_init__(self):
        if not _is_int(self.budget) or self.budget < 1:
            raise SearchError(f"--budget must be a positive number of evaluations, got {self.budget!r}")
        if not _is_int(self.seed):
            raise SearchError(f"--seed must be an integer, got {self.seed!r}")
        if self.strategy not in STRATEGIES:
            raise SearchError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.n_init is not None and (not _is_int(self.n_init) or self.n_init < 0):
            raise SearchError(f"--n-init must be a non-negative integer, got {self.n_init!r}")
        if self.time_budget_s is not None and not (isinstance(self.time_budget_s, (int, float))
                                                   and self.time_budget_s > 0):
            raise SearchError(f"--time-budget must be a positive number of seconds, got {self.time_budget_s!r}")


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
    n_init = default_n_init(space) if settings.n_init is None else settings.n_init
    search = {
        "seed": seed,
        "strategy": strategy,
        "num_timesteps": space.num_timesteps,
        "steps": space.steps,
        "free_first_step": space.free_first_step,
        "n_init": n_init,
    }
    started = time.perf_counter()
    with TrialLog.open(log_path, config, search, space.num_timesteps, resume) as log:
        run = _SearchSession(objective, space, log, budget, seed, strategy, n_init, settings.time_budget_s, started)
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
                run.evaluate_proposal()
        return run.result()


class _SearchSession:
    """State of one search session: the cache of evaluated schedules and the log."""

    def __init__(self, objective, space, log, budget, seed, strategy, n_init, time_budget_s, started):
        self.objective, self.space, self.log = objective, space, log
        self.budget, self.seed, self.n_init = budget, seed, n_init
        self.time_budget_s, self.started = time_budget_s, started
        self.proposer = make_proposer(strategy, space, seed)
        self.scores: Dict[Schedule, float] = {}  # the cache: each schedule is evaluated once
        self.bar: Optional[tqdm] = None
        self.stopped_by = "budget"

    @property
    def trials(self) -> List[Trial]:
        return self.log.trials

    # -- the three phases --------------------------------------------------
    def replay(self) -> None:
        expected = self._start_plan()
        for trial in self.trials:
            if not self.space.contains(trial.schedule) or trial.schedule in self.scores:
                raise SearchError(
                    f"trial log {self.log.path} has an unexpected schedule {trial.schedule} at index "
                    f"{trial.index}; remove it or choose another --log"
                )
            if trial.index < len(expected) and trial.schedule != expected[trial.index]:
                raise SearchError(
                    f"trial log {self.log.path} does not match this search's initial design at index "
                    f"{trial.index}; remove it or choose another --log"
                )
            self.scores[trial.schedule] = trial.bleu
        if self.trials:
            self._show_best()

    def evaluate_start(self) -> None:
        """The baseline and the initial design, in one objective call."""
        t0 = time.perf_counter()
        plan = self._start_plan()
        design_s = time.perf_counter() - t0
        todo = plan[len(self.trials) : self.budget]
        if not todo:  # no time check: the baseline is always evaluated
            return
        scores, model_s = self._evaluate(todo)
        for schedule, bleu in zip(todo, scores):
            is_baseline = len(self.trials) == 0
            self._record(
                schedule,
                bleu,
                source="baseline" if is_baseline else "initial",
                model_s=model_s / len(todo),
                optimiser_s=0.0 if is_baseline else design_s / max(1, len(plan) - 1),
            )

    def may_continue(self) -> bool:
        if len(self.trials) >= self.budget:
            self.stopped_by = "budget"
            return False
        if len(self.scores) >= self.space.size():
            self.stopped_by = "exhausted"
            return False
        if self._out_of_time():
            self.stopped_by = "time"
            return False
        return True

    def evaluate_proposal(self) -> None:
        index = len(self.trials)
        t0 = time.perf_counter()
        schedule = self.proposer.propose(self._observations(), index)
        optimiser_s = time.perf_counter() - t0
        if schedule in self.scores:  # proposers promise fresh schedules; a repeat is a bug
            raise RuntimeError(f"{self.proposer.name} proposed already evaluated schedule {schedule}")
        (bleu,), model_s = self._evaluate([schedule])
        self._record(schedule, bleu, self.proposer.name, model_s, optimiser_s)

    # -- helpers --------------------------------------------------------------
    def _start_plan(self) -> List[Schedule]:
        """Baseline then initial design.  A bigger design starts with a smaller
        one (same Sobol sequence), so capping it by the budget and extending the
        budget later gives the same evaluations as one long run."""
        baseline = self.space.baseline()
        size = min(self.n_init, self.budget - 1, self.space.size() - 1)
        return [baseline] + self.space.initial_design(size, self.seed, exclude=[baseline])

    def _observations(self) -> List[Observation]:
        return [(t.schedule, t.bleu) for t in self.trials]

    def _evaluate(self, schedules: Sequence[Schedule]):
        t0 = time.perf_counter()
        scores = self.objective.evaluate(list(schedules))
        model_s = time.perf_counter() - t0
        scores = list(scores)
        if len(scores) != len(schedules):
            raise SearchError(f"the objective returned {len(scores)} scores for {len(schedules)} schedules")
        checked = []
        for schedule, score in zip(schedules, scores):
            try:
                score = float(score)
            except (TypeError, ValueError):
                score = math.nan
            if not math.isfinite(score):
                raise SearchError(f"the objective returned {scores[len(checked)]!r} for schedule {schedule}")
            checked.append(score)
        return checked, model_s

    def _record(self, schedule, bleu, source, model_s, optimiser_s) -> None:
        trial = Trial(len(self.trials), schedule, bleu, source, model_s, optimiser_s, time.time())
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
        proposals = [t for t in self.trials if t.source in STRATEGIES]
        return SearchResult(
            best_schedule=best.schedule,
            best_bleu=best.bleu,
            baseline_schedule=baseline.schedule,
            baseline_bleu=baseline.bleu,
            evaluations=len(self.trials),
            trials=list(self.trials),
            elapsed_s=time.perf_counter() - self.started,
            model_s=sum(t.model_s for t in self.trials),
            optimiser_s=sum(t.optimiser_s for t in self.trials),
            proposal_optimiser_s=[t.optimiser_s for t in proposals],
            stopped_by=self.stopped_by,
        )


def _best(trials: Sequence[Trial]) -> Trial:
    """Highest score; the earliest wins ties, so the baseline is kept unless beaten."""
    return max(trials, key=lambda t: (t.bleu, -t.index))
