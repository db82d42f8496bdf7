"""Proposal strategies: which schedules to evaluate next, a batch at a time.

Every proposal draws its randomness from ``derive_seed(seed, index)`` inside
``torch.random.fork_rng``, never from a generator that runs across proposals,
so a resumed search proposes exactly what an uninterrupted one would.  A batch
is built greedily (BoTorch's sequential q-batch scheme: each pick is added to
the acquisition's pending points before the next), so its first k picks do not
depend on its size.

A proposer never returns an evaluated schedule, and never feeds the GP a made-up
score for duplicates: if every optimiser candidate is a known schedule, it
falls back to a random unseen one.  (The paper's strategy, in ``paper.py``,
keeps its reference implementation's made-up scores on purpose.)
"""
import hashlib
import logging
from dataclasses import dataclass
from typing import List, Optional, Protocol, Sequence, Set, Tuple

import torch

from ..schedules import Schedule
from ..errors import UsageError
from .space import ScheduleSpace

logger = logging.getLogger(__name__)

# What the proposers learn from: (schedule, BLEU) pairs in evaluation order.
Observation = Tuple[Schedule, float]


def derive_seed(seed: int, index: int, purpose: str = "") -> int:
    """A 63-bit seed that depends only on (seed, evaluation index, purpose)."""
    digest = hashlib.sha256(f"fairseq-tp:{seed}:{index}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Proposer(Protocol):
    name: str
    sequential: bool  # True: one schedule at a time, and it may spend budget without an evaluation
    default_n_init: Optional[int]  # its own initial design size (None: the loop's default)

    def propose(self, observations: Sequence[Observation], index: int, count: int) -> List[Schedule]:
        """Up to ``count`` fresh schedules to evaluate as evaluations ``index``, ``index + 1``, ..."""

    def spent(self, observations: Sequence[Observation]) -> int:
        """Budget the strategy used beyond ``observations`` (0 for ours)."""


def _evaluated(observations: Sequence[Observation]) -> Set[Schedule]:
    return {schedule for schedule, _ in observations}


def _unseen_random(space: ScheduleSpace, evaluated: Set[Schedule], generator: torch.Generator) -> Schedule:
    unseen = space.remaining(evaluated, 1, generator)
    if not unseen:
        raise UsageError(f"every schedule in {space} has been evaluated")
    return unseen[0]


class _OwnStrategy:
    """What our strategies share: batches, the loop's initial design, no budget spent in vain."""

    sequential = False
    default_n_init = None

    def spent(self, observations: Sequence[Observation]) -> int:
        return 0


@dataclass
class RandomProposer(_OwnStrategy):
    space: ScheduleSpace
    seed: int
    name: str = "random"

    def propose(self, observations: Sequence[Observation], index: int, count: int) -> List[Schedule]:
        taken, picks = _evaluated(observations), []
        for i in range(count):
            generator = torch.Generator().manual_seed(derive_seed(self.seed, index + i, self.name))
            picks.append(_unseen_random(self.space, taken, generator))
            taken.add(picks[-1])
        return picks


def make_proposer(strategy: str, space: ScheduleSpace, seed: int) -> Proposer:
    if strategy == "botorch":
        from .gp import BoTorchProposer  # BoTorch is imported when a search uses it (~1 s)
        return BoTorchProposer(space, seed)
    if strategy == "random":
        return RandomProposer(space, seed)
    if strategy == "paper":
        from .paper import PaperProposer  # needs the optional scikit-optimize
        return PaperProposer(space, seed)
    raise UsageError(f"unknown search strategy {strategy!r} (choose botorch, random or paper)")
