"""The search space: all ``N``-step schedules of a ``T``-step model.

What is searched (``searched``): the timesteps (the paper's space), the rates (the share of
tokens left noisy after each pass, under RDM's reparameterised strategies; timesteps fixed at
uniform-N), or both.  A point is the concatenation of one block per searched part, each a
strictly decreasing vector of integers in ``[0, upper]``: the *free* timesteps in raw units, and
the N - 1 free rates in thousandths less one (``v`` is rate ``(v + 1) / 1000``; the last rate is 0).
With a fixed first step (the default) the decoder always starts from the fully
noised state ``T - 1`` -- as the uniform baseline does -- and only the later
``N - 1`` steps are searched.

BoTorch optimises over the box ``[0, hi]^d`` with the linear constraints
``x_i - x_{i+1} >= 1`` inside each block (strictly decreasing); ``hi = T - 2`` when the first
step is fixed, which keeps the first free step below ``T - 1``.  Optimiser
output is continuous and only feasible up to a tolerance, so every point goes
through :meth:`ScheduleSpace.to_schedule`, which rounds and repairs.
"""
import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import torch

from ..errors import UsageError
from ..schedules import Schedule, strictly_decreasing

# (indices, coefficients, rhs) meaning sum(coefficients * x[indices]) >= rhs
LinearConstraint = Tuple[torch.Tensor, torch.Tensor, float]

DTYPE = torch.float64
ENUMERATION_LIMIT = 2_000_000  # spaces up to this size may be listed in full
SEARCHED = ("timesteps", "rates", "both")
RATE_UNITS = 1000  # rates are searched in thousandths, as schedules keep them


@dataclass(frozen=True)
class ScheduleSpace:
    num_timesteps: int
    steps: int
    free_first_step: bool = False
    searched: str = "timesteps"
    # With rates searched: the decoding strategy's own rates for N passes (what a schedule without
    # rates, the uniform baseline, decodes with), so that it has a place in the space.
    curve: Optional[Tuple[float, ...]] = None

    def __post_init__(self):
        T, N = self.num_timesteps, self.steps
        if isinstance(T, bool) or not isinstance(T, int) or T < 2:
            raise UsageError(f"the number of diffusion timesteps must be an integer >= 2, got {T!r}")
        if isinstance(N, bool) or not isinstance(N, int) or N < 1:
            raise UsageError(f"the number of steps must be a positive integer, got {N!r}")
        if self.searched not in SEARCHED:
            raise UsageError(f"--search-space must be one of {', '.join(SEARCHED)}, got {self.searched!r}")
        if self.searches_rates:
            self._check_rate_space()
            return
        if N >= T:
            raise UsageError(
                f"cannot search {N} steps for a model with T = {T}: "
                f"with N >= T at most one schedule exists (every timestep), nothing to search"
            )
        if self.dim == 0:
            raise UsageError(
                f"cannot search 1 step with the first step fixed at {T - 1}: "
                f"only one schedule exists, nothing to search (free the first step or use more steps)"
            )

    def _check_rate_space(self) -> None:
        T, N = self.num_timesteps, self.steps
        if N < 2:
            raise UsageError("cannot search the rates of 1 step: its only rate is 0 (all decoded), nothing to search")
        if N > T or (self.searches_timesteps and N >= T):
            raise UsageError(f"cannot search {N} steps for a model with T = {T}")
        if self.free_first_step and not self.searches_timesteps:
            raise UsageError("--free-first-step frees a timestep, and --search-space rates keeps the timesteps "
                                "at uniform: search timesteps or both")
        if self.curve is None or len(self.curve) != N:
            raise UsageError(f"searching rates needs the decoding strategy's {N} rates for the uniform baseline")

    # -- shape of the encoding ---------------------------------------------
    @property
    def searches_timesteps(self) -> bool:
        return self.searched in ("timesteps", "both")

    @property
    def searches_rates(self) -> bool:
        return self.searched in ("rates", "both")

    @property
    def blocks(self) -> List[Tuple[int, int]]:
        """(upper, dim) of each searched block, timesteps first."""
        blocks = []
        if self.searches_timesteps:
            blocks.append((self.upper, self.steps if self.free_first_step else self.steps - 1))
        if self.searches_rates:
            blocks.append((RATE_UNITS - 2, self.steps - 1))
        return blocks

    @property
    def dim(self) -> int:
        """Number of free values (BoTorch input dimensions)."""
        return sum(d for _, d in self.blocks)

    @property
    def upper(self) -> int:
        """Largest value a free timestep may take."""
        return self.num_timesteps - 1 if self.free_first_step else self.num_timesteps - 2

    def size(self) -> int:
        """How many distinct schedules the space holds."""
        return math.prod(math.comb(u + 1, d) for u, d in self.blocks)

    def bounds(self) -> torch.Tensor:
        uppers = [float(u) for u, d in self.blocks for _ in range(d)]
        return torch.tensor([[0.0] * self.dim, uppers], dtype=DTYPE)

    def inequality_constraints(self) -> List[LinearConstraint]:
        """``x_i - x_{i+1} >= 1`` for consecutive values of a block (BoTorch format)."""
        constraints, offset = [], 0
        for _, d in self.blocks:
            constraints += [(torch.tensor([i, i + 1]), torch.tensor([1.0, -1.0], dtype=DTYPE), 1.0)
                            for i in range(offset, offset + d - 1)]
            offset += d
        return constraints

    def baseline(self) -> Schedule:
        return Schedule.uniform(self.steps, self.num_timesteps)

    # -- conversions ---------------------------------------------------------
    def to_schedule(self, x: Sequence[float]) -> Schedule:
        """Round a (possibly slightly infeasible) point and repair it into a schedule."""
        values = torch.as_tensor(x, dtype=DTYPE).reshape(-1)
        if values.numel() != self.dim:
            raise UsageError(f"expected {self.dim} free values, got {values.numel()}")
        if not torch.isfinite(values).all():
            raise UsageError(f"cannot turn non-finite point {values.tolist()} into a schedule")
        parts, offset = [], 0
        for upper, d in self.blocks:
            rounded = torch.floor(values[offset:offset + d] + 0.5).clamp(0, upper).long().tolist()
            parts.append(strictly_decreasing(sorted(rounded, reverse=True), upper))
            offset += d
        return self._wrap(parts)

    def to_tensor(self, schedule: Schedule) -> torch.Tensor:
        """The free values of ``schedule`` as a float64 point."""
        self.check_member(schedule)
        point: List[float] = []
        if self.searches_timesteps:
            point += schedule.timesteps if self.free_first_step else schedule.timesteps[1:]
        if self.searches_rates:
            rates = schedule.rates if schedule.rates is not None else self.curve
            point += [r * RATE_UNITS - 1 for r in rates[:-1]]
        return torch.tensor(point, dtype=DTYPE)

    def to_tensors(self, schedules: Iterable[Schedule]) -> torch.Tensor:
        rows = [self.to_tensor(s) for s in schedules]
        return torch.stack(rows) if rows else torch.zeros(0, self.dim, dtype=DTYPE)

    def contains(self, schedule: Schedule) -> bool:
        if schedule.num_timesteps != self.num_timesteps or schedule.steps != self.steps:
            return False
        if not self.searches_timesteps:
            timesteps_fit = schedule.timesteps == self.baseline().timesteps
        else:
            timesteps_fit = self.free_first_step or schedule.timesteps[0] == self.num_timesteps - 1
        return timesteps_fit and (self.searches_rates or schedule.rates is None)

    def check_member(self, schedule: Schedule) -> None:
        if not self.contains(schedule):
            raise UsageError(f"schedule {schedule} (T = {schedule.num_timesteps}) is not in {self}")

    def __str__(self) -> str:
        first = "free first step" if self.free_first_step else f"first step fixed at {self.num_timesteps - 1}"
        if self.searched == "rates":
            return f"the rates of {self.steps} uniform steps for T = {self.num_timesteps}"
        what = "schedules" if self.searched == "timesteps" else "schedules and rates"
        return f"the space of {self.steps}-step {what} for T = {self.num_timesteps} ({first})"

    def _wrap(self, parts: Sequence[Sequence[int]]) -> Schedule:
        """The schedule of one strictly decreasing integer vector per block."""
        parts = list(parts)
        if self.searches_timesteps:
            head = () if self.free_first_step else (self.num_timesteps - 1,)
            timesteps = head + tuple(parts.pop(0))
        else:
            timesteps = self.baseline().timesteps
        rates = None
        if self.searches_rates:
            rates = tuple((v + 1) / RATE_UNITS for v in parts.pop(0)) + (0.0,)
        return Schedule(timesteps, self.num_timesteps, rates)

    # -- sampling ------------------------------------------------------------
    def random_schedule(self, generator: torch.Generator) -> Schedule:
        """Uniform over all schedules: a uniform random ``dim``-subset of each block's range."""
        parts = [sorted(torch.randperm(u + 1, generator=generator)[:d].tolist(), reverse=True) for u, d in self.blocks]
        return self._wrap(parts)

    def initial_design(
        self, n: int, seed: int, exclude: Iterable[Schedule] = ()
    ) -> List[Schedule]:
        """Up to ``n`` distinct space-filling schedules (fewer only if the space runs out).

        Scrambled Sobol points in the unit cube, each block sorted descending: sorting
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
                schedule = self.to_schedule(self._scaled(u))
                if schedule not in taken:
                    taken.add(schedule)
                    design.append(schedule)
                    if len(design) == want:
                        break
        if len(design) < want:
            generator = torch.Generator().manual_seed(seed)
            design += self.remaining(taken, want - len(design), generator)
        return design

    def _scaled(self, u: torch.Tensor) -> torch.Tensor:
        """A unit-cube point sorted descending in each block and scaled so that floor(x + 0.5) is
        uniform over the block's 0..upper."""
        parts, offset = [], 0
        for upper, d in self.blocks:
            parts.append(torch.sort(u[offset:offset + d], descending=True).values * (upper + 1) - 0.5)
            offset += d
        return torch.cat(parts)

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
            raise UsageError(f"could not find {count} new schedules in {self}")
        left = [s for s in self.enumerate() if s not in seen]
        order = torch.randperm(len(left), generator=generator).tolist()
        return picked + [left[i] for i in order[: count - len(picked)]]

    def enumerate(self) -> Iterator[Schedule]:
        blocks = [itertools.combinations(range(u, -1, -1), d) for u, d in self.blocks]
        for parts in itertools.product(*blocks):
            yield self._wrap(parts)

    def enumeration_tensor(self) -> torch.Tensor:
        """Every schedule's point, [size, dim], in :meth:`enumerate`'s order (for small spaces)."""
        grids = []
        for upper, d in self.blocks:
            values = torch.arange(upper, -1, -1, dtype=DTYPE)
            grids.append(torch.combinations(values, r=d).reshape(-1, d))
        points = grids[0]
        for grid in grids[1:]:
            points = torch.cat([points.repeat_interleave(len(grid), 0), grid.repeat(len(points), 1)], dim=1)
        return points
