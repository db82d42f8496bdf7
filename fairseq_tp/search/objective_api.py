"""What the search needs from the thing it optimises."""
from typing import List, Protocol, Sequence

from ..schedules import Schedule


class Objective(Protocol):
    def evaluate(self, schedules: Sequence[Schedule]) -> List[float]:
        """One score per schedule, higher is better (BLEU), in the same order.

        Called with several schedules when they are known up front (the
        baseline and the initial design), so they can be decoded in one batch.
        """
