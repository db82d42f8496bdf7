"""The Temporal Pruning paper's own search, as its reference implementation runs it (a baseline).

scikit-optimize's ``Optimizer`` with its defaults (GP, ``gp_hedge``, 10 random initial points) over
N - 1 independent integer dimensions in [0, T); the first step is fixed at T - 1 and each proposal is
sorted into a schedule.  A proposal with a repeated step (two equal values, or one equal to T - 1) is
not decoded: it is told -1 on the minimised -BLEU (a made-up BLEU of 1, as the reference does) and
counts toward the budget.  A proposal that sorts into an already evaluated schedule (skopt's points are
unordered) is what the reference decodes again: it is told that schedule's BLEU (what decoding it again
gives, noise being common to all schedules) and counts toward the budget, without a new trial.  The loop's uniform baseline is told first, in place of the reference's own
first point.  skopt's optimiser is stateful, so the state is rebuilt by replaying the observations in
order (each ask must reproduce the logged schedule): a resumed search continues as an uninterrupted one.
"""
import warnings
from typing import Dict, List, Sequence, Tuple

from ..schedules import Schedule
from ..errors import UsageError
from .space import ScheduleSpace

REPEATED_STEP_SCORE = -1.0  # what the reference tells skopt for a proposal it cannot decode

def require_scikit_optimize():
    """skopt's Optimizer and Integer, or a one-line error naming the optional extra."""
    try:
        from skopt import Optimizer
        from skopt.space import Integer
    except ImportError:
        raise UsageError("--strategy paper needs scikit-optimize: pip install 'fairseq-tp[paper]'") from None
    return Optimizer, Integer


class PaperProposer:
    name = "paper"
    sequential = True
    default_n_init = 0  # skopt draws its own initial points

    def __init__(self, space: ScheduleSpace, seed: int):
        self._skopt = require_scikit_optimize()
        if space.searched != "timesteps":
            raise UsageError("--strategy paper searches timesteps only, as the paper does: use "
                              "--search-space timesteps, or --strategy botorch or random for rates")
        if space.free_first_step:
            raise UsageError("--strategy paper fixes the first step at T-1, as the paper does: "
                              "drop --free-first-step")
        self.space, self.seed = space, seed
        self._restart()

    def _restart(self):
        Optimizer, Integer = self._skopt
        T, dims = self.space.num_timesteps, self.space.dim
        self._optimizer = Optimizer([Integer(0, T - 1) for _ in range(dims)], random_state=self.seed)
        self._told = 0  # observations replayed into the optimiser
        self._wasted = 0  # proposals with a repeated step, each one budget unit
        self._pending: List[int] = []  # a proposal asked but not yet told (the one being evaluated)

    def spent(self, observations: Sequence[Tuple[Schedule, float]]) -> int:
        self._replay(observations)
        return self._wasted

    def propose(self, observations, index: int, count: int) -> List[Schedule]:
        self._replay(observations)
        known = dict(observations)
        for _ in range(count):
            point, schedule = self._ask()
            if schedule is not None and schedule not in known:
                self._pending = point
                return [schedule]
            self._tell_unevaluated(point, schedule, known)
        return []

    def _tell_unevaluated(self, point, schedule, known: Dict[Schedule, float]) -> None:
        """A proposal that costs a unit of budget but gets no trial: a repeated step or a known schedule."""
        self._optimizer.tell(point, REPEATED_STEP_SCORE if schedule is None else -known[schedule])
        self._wasted += 1

    # -- replaying the log into skopt's state ----------------------------------
    def _replay(self, observations):
        if self._told > len(observations):
            self._restart()
        for schedule, bleu in observations[self._told:]:
            if self._told == 0:  # the baseline: told as is
                point = list(self._free(schedule))
            else:
                point = self._pending or self._ask_until_fresh(schedule, dict(observations[:self._told]))
            self._optimizer.tell(point, -bleu)
            self._pending, self._told = [], self._told + 1

    def _ask_until_fresh(self, expected: Schedule, known: Dict[Schedule, float]) -> List[int]:
        while True:
            point, schedule = self._ask()
            if schedule is None or schedule in known:
                self._tell_unevaluated(point, schedule, known)
                continue
            if schedule != expected:
                raise UsageError(f"the trial log's schedule {expected} is not what the paper's optimiser "
                                  f"proposes ({schedule}); remove the log or choose another --log")
            return point

    def _ask(self):
        with warnings.catch_warnings():
            # skopt replaces a point it was told before by a random one, and says so; expected here.
            warnings.filterwarnings("ignore", message="The objective has been evaluated at point")
            point = [int(v) for v in self._optimizer.ask()]
        T = self.space.num_timesteps
        steps = [T - 1] + point
        if len(set(steps)) != len(steps):
            return point, None
        return point, Schedule((T - 1,) + tuple(sorted(point, reverse=True)), T)

    def _free(self, schedule: Schedule):
        return schedule.timesteps[1:]
