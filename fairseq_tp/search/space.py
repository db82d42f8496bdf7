"""The search space: all ``N``-step schedules of a ``T``-step model.

A point is the vector of *free* timesteps in raw integer units, descending.
With a fixed first step (the default) the decoder always starts from the fully
noised state ``T - 1`` -- as the uniform baseline does -- and only the later
``N - 1`` steps are searched.

BoTorch optimises over the box ``[0, hi]^d`` with the linear constraints
``x_i - x_{i+1} >= 1`` (strictly decreasing); ``hi = T - 2`` when the first
step is fixed, which keeps the first free step below ``T - 1``.  Optimiser
output is continuous and only feasible up to a tolerance, so every point goes
through :meth:`ScheduleSpace.to_schedule`, which rounds and repairs.
"""
import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Sequence, Set, Tuple

import torch

from ..schedules import Schedule, ScheduleError, strictly_decreasing

# (indices, coefficients, rhs) meaning sum(coefficients * x[indices]) >= rhs
LinearConstraint = Tuple[torch.Tensor, torch.Tensor, float]

DTYPE = torch.float64
ENUMERATION_LIMIT = 2_000_000  # spaces up to this size may be listed in full


class SearchError(ValueError):
    """A search that cannot start or go on; the message is one line for the user."""


@dataclass(frozen=True)
class ScheduleSpace:
    num_timesteps: int
    steps: int
    free_first_step: bool = False

    def __post_init__(self):
        T, N = self.num_timesteps, self.steps
        if isinstance(T, bool) or not isinstance(T, int) or T < 2:
            raise ScheduleError(f"the number of diffusion timesteps must be an integer >= 2, got {T!r}")
        if isinstance(N, bool) or not isinstance(N, int) or N < 1:
            raise ScheduleError(f"the number of steps must be a positive integer, got {N!r}")
        if N >= T:
            raise ScheduleError(
                f"cannot search {N} steps for a model with T = {T}: "
                f"with N >= T at most one schedule exists (every timestep), nothing to search"
            )
        if self.dim == 0:
            raise ScheduleError(
                f"cannot search 1 step with the first step fixed at {T - 1}: "
                f"only one schedule exists, nothing to search (free the first step or use more steps)"
            )

    # -- shape of the encoding ---------------------------------------------
    @property
    def dim(self) -> int:
        """Number of free timesteps (BoTorch input dimensions)."""
        return self.steps if self.free_first_step else self.steps - 1

    @property
    def upper(self) -> int:
        """Largest value a free timestep may take."""
        return self.num_timesteps - 1 if self.free_first_step else self.num_timesteps - 2

    def size(self) -> int:
        """How many distinct schedules the space holds."""
        return math.comb(self.upper + 1, self.dim)

    def bounds(self) -> torch.Tensor:
        d = self.dim
        return torch.tensor([[0.0] * d, [float(self.upper)] * d], dtype=DTYPE)

    def inequality_constraints(self) -> List[LinearConstraint]:
        """``x_i - x_{i+1} >= 1`` for consecutive free steps (BoTorch format)."""
        return [
            (torch.tensor([i, i + 1]), torch.tensor([1.0, -1.0], dtype=DTYPE), 1.0)
            for i in range(self.dim - 1)
        ]

    def baseline(self) -> Schedule:
        return Schedule.uniform(self.steps, self.num_timesteps)

    # -- conversions ---------------------------------------------------------
    def to_schedule(self, x: Sequence[float]) -> Schedule:
        """Round a (possibly slightly infeasible) point and repair it into a schedule."""
        values = torch.as_tensor(x, dtype=DTYPE).reshape(-1)
        if values.numel() != self.dim:
            raise ScheduleError(f"expected {self.dim} free timesteps, got {values.numel()}")
        if not torch.isfinite(values).all():
            raise ScheduleError(f"cannot turn non-finite point {values.tolist()} into a schedule")
        rounded = torch.floor(values + 0.5).clamp(0, self.upper).long().tolist()
        return self._wrap(strictly_decreasing(sorted(rounded, reverse=True), self.upper))

    def to_tensor(self, schedule: Schedule) -> torch.Tensor:
        """The free timesteps of ``schedule`` as a float64 point."""
        self.check_member(schedule)
        free = schedule.timesteps if self.free_first_step else schedule.timesteps[1:]
        return torch.tensor(free, dtype=DTYPE)

    def to_tensors(self, schedules: Iterable[Schedule]) -> torch.Tensor:
        rows = [self.to_tensor(s) for s in schedules]
        return torch.stack(rows) if rows else torch.zeros(0, self.dim, dtype=DTYPE)

    def contains(self, schedule: Schedule) -> bool:
        return (
            schedule.num_timesteps == self.num_timesteps
            and schedule.steps == self.steps
            and (self.free_first_step or schedule.timesteps[0] == self.num_timesteps - 1)
        )

    def check_member(self, schedule: Schedule) -> None:
        if not self.contains(schedule):
            raise ScheduleError(f"schedule {schedule} (T = {schedule.num_timesteps}) is not in {self}")

    def __str__(self) -> str:
        first = "free first step" if self.free_first_step else f"first step fixed at {self.num_timesteps - 1}"
        return f"the space of {self.steps}-step schedules for T = {self.num_timesteps} ({first})"

    def _wrap(self, free: Sequence[int]) -> Schedule:
        head = () if self.free_first_step else (self.num_timesteps - 1,)
        return Schedule(head + tuple(free), self.num_timesteps)

    # -- sampling ------------------------------------------------------------
    def random_schedule(self, generator: torch.Generator) -> Schedule:
        """Uniform over all schedules: a uniform random ``dim``-subset of the range."""
        picked = torch.randperm(self.upper + 1, generator=generator)[: self.dim]
        return self._wrap(sorted(picked.tolist(), reverse=True))

    def initial_design(
        self, n: int, seed: int, exclude: Iterable[Schedule] = ()
    ) -> List[Schedule]:
        """Up to ``n`` distinct space-filling schedules (fewer only if the space runs out).

        Scrambled Sobol points in the unit cube, each sorted descending: sorting
        folds the cube onto the ordered region and keeps the points uniform on it.
        """
        taken: Set[Schedule] = set(exclude)
        want = min(n, self.size() - sum(1 for s in taken if self.contains(s)))
        design: List[Schedule] = []
        sobol = torch.quasirandom.SobolEngine(self.dim, scramble=True, seed=seed)
        draws = 0
        # Rounding collapses many Sobol points in tiny spaces; stop drawing
        # after a generous number of misses and fill from the enumeration.
        while len(design) < want and draws < 64 * max(n, 16):
            batch = sobol.draw(max(n, 16), dtype=DTYPE)
            draws += len(batch)
            for u in batch:
                # scale so that floor(x + 0.5) is uniform over 0..upper
                x = torch.sort(u, descending=True).values * (self.upper + 1) - 0.5
                schedule = self.to_schedule(x)
                if schedule not in taken:
                    taken.add(schedule)
                    design.append(schedule)
                    if len(design) == want:
                        break
        if len(design) < want:
            generator = torch.Generator().manual_seed(seed)
            design += self.remaining(taken, want - len(design), generator)
        return design

    def remaining(self, taken: Set[Schedule], count: int, generator: torch.Generator) -> List[Schedule]:
        """``count`` random schedules not in ``taken`` (enumerates the space if needed)."""
        picked: List[Schedule] = []
        seen = set(taken)
        for _ in range(64 * max(count, 1)):
            if len(picked) == count:
                return picked
            schedule = self.random_schedule(generator)
            if schedule not in seen:
                seen.add(schedule)
                picked.append(schedule)
        # Rejection keeps missing: the space is (nearly) exhausted, so it is small.
        if self.size() > ENUMERATION_LIMIT:
            raise SearchError(f"could not find {count} new schedules in {self}")
        left = [s for s in self.enumerate() if s not in seen]
        order = torch.randperm(len(left), generator=generator).tolist()
        return picked + [left[i] for i in order[: count - len(picked)]]

    def enumerate(self) -> Iterator[Schedule]:
        for free in itertools.combinations(range(self.upper, -1, -1), self.dim):
            yield self._wrap(free)
