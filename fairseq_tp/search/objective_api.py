"""What the search needs from the thing it optimises."""
import math
from typing import List, Protocol, Sequence, Tuple, Union

from ..errors import UsageError
from ..schedules import Schedule

# A schedule's score: a number, or one number per noise draw (replicates) when decoding draws random numbers.
Score = Union[float, Sequence[float]]


class Objective(Protocol):
    def evaluate(self, schedules: Sequence[Schedule]) -> List[Score]:
        """One score per schedule, higher is better (BLEU), in the same order: a number, or the scores of
        several noise draws, whose mean the search maximises.

        Called with several schedules when they are known up front (the
        baseline and the initial design), so they can be decoded in one batch.
        """


def replicate_scores(score: Score, schedule: Schedule) -> Tuple[float, ...]:
    """The finite numbers in a score (one for a plain number); anything else is the objective's error."""
    values = tuple(score) if isinstance(score, (list, tuple)) else (score,)
    checked = []
    for value in values:
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise UsageError(f"the objective returned {score!r} for schedule {schedule}")
        checked.append(value)
    if not checked:
        raise UsageError(f"the objective returned no replicate scores for schedule {schedule}")
    return tuple(checked)


def mean_score(score: Score, schedule: Schedule) -> float:
    """What the search maximises: the score, or the mean over its noise draws."""
    values = replicate_scores(score, schedule)
    return sum(values) / len(values)
