"""Confirmation: choose among the search's best schedules on sentences the search never saw.

The best of 40 schedules on 20 shots wins partly by luck, so its few-shot gain does not carry
over to new text.  Here the ``top`` best distinct schedules (ranked by a GP's posterior mean, which
pools each score with its neighbours') and the uniform baseline are decoded
on further sentences (disjoint from the shots); the one with the best BLEU there is chosen, and
kept only if the out-of-bag bootstrap of that choice (:func:`selection_confidence`: pick on a
resample of the confirmation sentences, score against uniform on the ones it left out) beats
uniform in at least ``level`` of the resamples.  No pick is ever tested on the sentences that
chose it, and every confirmation sentence serves both choosing and testing.
"""
import hashlib
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..schedules import Schedule
from .significance import selection_confidence
from .space import ScheduleSpace
from .trial_log import Trial

BOOTSTRAP_SAMPLES = 1000


def candidates(trials: Sequence[Trial], top: int, space: Optional[ScheduleSpace] = None) -> List[Schedule]:
    """The baseline (trial 0) first, then the ``top`` best other schedules: by a GP's posterior mean where
    ``space`` is given and a GP can be fitted, else by few-shot BLEU (earliest first on ties)."""
    from .gp import rank_by_posterior_mean  # BoTorch, imported when a confirmation ranks

    baseline = trials[0].schedule
    ranked = rank_by_posterior_mean(space, [(t.schedule, t.bleu) for t in trials]) if space is not None else None
    if ranked is None:
        ranked = [t.schedule for t in sorted(trials, key=lambda t: (-t.bleu, t.index))]
    return [baseline] + [s for s in dict.fromkeys(ranked) if s != baseline][:top]


def sentences_digest(sentence_ids: Sequence[int]) -> str:
    """What a trial log's confirmation lines record of their sentences, so a resume can match them."""
    return hashlib.sha256(",".join(str(i) for i in sentence_ids).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Confirmed:
    chosen: Schedule
    kept_uniform: bool
    why: str
    bleu: List[float]  # per candidate (baseline first), on all confirmation sentences
    best: int  # the candidate with the best BLEU there
    confidence: float  # share of resamples whose out-of-bag pick beat uniform
    mean_left_out_gain: float
    gain_interval: Tuple[float, float]  # the out-of-bag gains' (1 - level, level) quantiles
    resamples: int


def choose_confirmed(statistics: np.ndarray, schedules: Sequence[Schedule], score: Callable[[Sequence[int]], float],
                     *, level: float, seed: int) -> Confirmed:
    """``statistics``: [candidates, sentences, draws, k] BLEU statistics on the confirmation sentences,
    candidate 0 the baseline.  ``score`` turns corpus statistics into BLEU."""
    corpus = statistics.sum(axis=1)  # [candidates, draws, k]
    bleu = [float(np.mean([score([int(x) for x in draw]) for draw in c])) for c in corpus]
    best = max(range(len(bleu)), key=lambda i: (bleu[i], -i))  # the baseline wins ties
    test = selection_confidence(statistics, score, samples=BOOTSTRAP_SAMPLES, seed=seed)
    interval = (float(np.quantile(test.gains, 1 - level)), float(np.quantile(test.gains, level)))
    if best == 0:
        kept, why = True, "no candidate beat uniform on the confirmation sentences"
    elif test.ahead < level:
        kept, why = True, (f"the pick beat uniform on left-out confirmation sentences in {test.ahead:.1%} of "
                           f"bootstrap resamples, under --confirm-level {level}")
    else:
        kept, why = False, (f"the pick beat uniform on left-out confirmation sentences in {test.ahead:.1%} of "
                            f"bootstrap resamples (--confirm-level {level})")
    return Confirmed(schedules[0] if kept else schedules[best], kept, why, bleu, best, test.ahead, test.mean_gain,
                     interval, test.resamples)
