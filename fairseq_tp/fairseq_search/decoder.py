"""Decoding a whole subset under any schedule and noise seed, with the model loaded once: what benchmarks and
the demo need, without a search.

    decoder = SubsetDecoder(["data-bin/x", "--path", "ckpt.pt", "--argmax-decoding"], subset="test")
    decoder.bleu(Schedule.uniform(4, 50), seed=1)
"""
from typing import Dict, List, Optional, Sequence, Tuple

from ..schedules import Schedule
from .bleu import SacreBleu
from .cli import parse_generation
from .loading import LoadedModel, load_for_decoding


class SubsetDecoder:
    """A checkpoint loaded once with fairseq-generate's options; BLEU of a subset (or its first ``limit``
    sentences) under any schedule and noise seed, scored as fairseq-generate writes the hypotheses."""

    def __init__(self, argv: Sequence[str], subset: str = "test", scorer=None, limit: Optional[int] = None,
                 schedules_per_batch: int = 1):
        self.loaded: LoadedModel = load_for_decoding(parse_generation(list(argv)))
        self.dataset = self.loaded.subset(subset, "--gen-subset")
        self.sentence_ids = range(min(limit, len(self.dataset)) if limit else len(self.dataset))
        self.scorer = scorer if scorer is not None else SacreBleu()
        self.schedules_per_batch = schedules_per_batch
        self._cache: Dict[Tuple[Schedule, int], float] = {}

    @property
    def num_timesteps(self) -> int:
        return self.loaded.model.diffusion.num_timesteps

    @property
    def deterministic(self) -> bool:
        """Whether the decoding draws no random numbers (then every noise seed gives the same output)."""
        return self.loaded.model.diffusion.decodes_deterministically(self.loaded.generator.options)

    def objective(self, seed: int):
        """The subset as a :class:`FewShotBleu` under noise seed ``seed`` (for timing or batched decoding)."""
        return self.loaded.objective(self.dataset, self.sentence_ids, self.scorer, seed=seed,
                                     schedules_per_batch=self.schedules_per_batch)

    def bleu(self, schedule: Schedule, seed: int = 1) -> float:
        if (schedule, seed) not in self._cache:
            self._cache[schedule, seed] = self.objective(seed).evaluate([schedule])[0]
        return self._cache[schedule, seed]

    def bleus(self, schedule: Schedule, seeds: Sequence[int]) -> List[float]:
        return [self.bleu(schedule, seed) for seed in seeds]
