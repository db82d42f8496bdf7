"""The BLEU-vs-steps front: one search per number of steps N, each against the all-steps BLEU on the
same shots, and the smallest N whose searched schedule keeps a target share of it.

The budget is divided in proportion to N (free steps + 1): every N gets its uniform baseline and an
initial design point per free step, and larger spaces, which the GP needs more points to model, get
more.  The all-steps reference is one extra evaluation, outside the budget.
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..schedules import Schedule
from .loop import SearchResult, SearchSettings, run_search
from .objective_api import Objective, mean_score
from ..errors import UsageError
from .space import ScheduleSpace


@dataclass(frozen=True)
class FrontPoint:
    """One N: its search, and what it would write, scored where the front is measured (``Front.measured_on``)."""
    steps: int
    result: SearchResult  # the search on the shots
    schedule: Schedule  # what this N writes: the search's best, or the confirmation's pick
    bleu: float
    uniform_bleu: float  # the uniform N-step schedule, in the same place
    share: float  # bleu / the all-steps BLEU there
    uniform_share: float


@dataclass(frozen=True)
class Front:
    reference_schedule: Schedule
    reference_bleu: float
    points: List[FrontPoint]
    target: float
    chosen: FrontPoint
    target_met: bool
    measured_on: str = "shots"  # or "confirmation": the sentences beside the shots


def front_point(steps: int, result: SearchResult, schedule: Schedule, bleu: float, uniform_bleu: float,
                reference_bleu: float) -> FrontPoint:
    shares = [b / reference_bleu if reference_bleu > 0 else 0.0 for b in (bleu, uniform_bleu)]
    return FrontPoint(steps, result, schedule, bleu, uniform_bleu, *shares)


def divide_budget(budget: int, spaces: Sequence[ScheduleSpace]) -> List[int]:
    """Evaluations per space, in proportion to its number of steps, each capped by the space's size."""
    if budget < len(spaces):
        raise UsageError(f"--budget {budget} is less than one evaluation per number of steps ({len(spaces)})")
    weights = [s.steps for s in spaces]
    shares = [budget * w / sum(weights) for w in weights]
    counts = [max(1, int(x)) for x in shares]
    # The remainder goes to the largest fractional parts (ties: more steps first).
    order = sorted(range(len(spaces)), key=lambda i: (counts[i] - shares[i], -spaces[i].steps))
    for i in order[: budget - sum(counts)]:
        counts[i] += 1
    return [min(c, s.size()) for c, s in zip(counts, spaces)]


def choose(points: Sequence[FrontPoint], target: float):
    """(the smallest N whose share reaches ``target``, True), else (the best share, smaller N first, False)."""
    reaching = [p for p in points if p.share >= target]
    if reaching:
        return min(reaching, key=lambda p: p.steps), True
    return max(points, key=lambda p: (p.share, -p.steps)), False


def check_target(target: float) -> None:
    if not 0 < target <= 1:
        raise UsageError(f"--target must be a share of the all-steps BLEU in (0, 1], got {target}")


def search_front(objective: Objective, num_timesteps: int, steps: Sequence[int], settings: SearchSettings, *,
                 target: float, log_path: Callable[[int], str], config: Dict[str, Any], resume: bool = False,
                 free_first_step: bool = False, progress: bool = True, searched: str = "timesteps",
                 curve: Optional[Callable[[int], Tuple[float, ...]]] = None) -> Front:
    """One search per N in ``steps`` (ascending), sharing ``settings`` but for the divided budget."""
    check_target(target)
    steps = sorted(set(steps))
    spaces = [ScheduleSpace(num_timesteps, n, free_first_step, searched, curve(n) if curve else None) for n in steps]
    budgets = divide_budget(settings.budget, spaces)
    reference = Schedule.uniform(num_timesteps, num_timesteps)
    reference_bleu = mean_score(objective.evaluate([reference])[0], reference)
    points = []
    for space, budget in zip(spaces, budgets):
        result = run_search(objective, space, dataclasses.replace(settings, budget=budget),
                            log_path=log_path(space.steps), config={**config, "budget": budget}, resume=resume,
                            progress=progress)
        points.append(front_point(space.steps, result, result.best_schedule, result.best_bleu, result.baseline_bleu,
                                  reference_bleu))
    chosen, met = choose(points, target)
    return Front(reference, reference_bleu, points, target, chosen, met)
