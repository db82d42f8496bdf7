"""Does picking the best of the evaluated schedules on the shots beat the baseline on new sentences?

The best of 40 schedules on 20 sentences wins partly by luck (the winner's curse), so testing the winner
alone on the same shots is no guard: on the Bible fixture a schedule 2.2 BLEU ahead on 20 shots beat
uniform on 99 % of paired bootstrap resamples of them, and lost on the test set.  This tests the
procedure instead (an out-of-bag bootstrap, Efron & Tibshirani 1997): resample the shots with
replacement, pick the best schedule on the resample, and score it against the baseline on the shots
the resample left out, which played no part in the pick.  Sentences are resampled whole, with all their
noise draws; a schedule's score is the mean over draws of the corpus score, as in the search.
"""
from dataclasses import dataclass
from typing import Callable, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class SelectionTest:
    ahead: float  # share of resamples whose pick beat the baseline on the left-out shots
    mean_gain: float  # mean left-out score gain of the pick over the baseline
    resamples: int  # resamples that left at least one shot out
    gains: Tuple[float, ...] = ()  # each resample's left-out gain


def selection_confidence(statistics, score: Callable[[Sequence[int]], float], *, samples: int = 1000,
                         seed: int = 0) -> SelectionTest:
    """``statistics``: per-sentence metric statistics of every evaluated schedule, shape [schedules,
    sentences, draws, k], summing to corpus statistics; schedule 0 is the baseline.  ``score`` turns one
    corpus's k statistics into its score.  Ties in a pick go to the earliest schedule (the baseline first)."""
    stats = np.asarray(statistics, dtype=np.int64)
    if stats.ndim != 4 or stats.shape[0] < 2 or stats.shape[1] < 2:
        raise ValueError(f"expected [schedules >= 2, sentences >= 2, draws, statistics], got shape {stats.shape}")
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    sentences = stats.shape[1]
    rng = np.random.default_rng(seed)
    ahead, gains = 0, []
    for _ in range(samples):
        counts = np.bincount(rng.integers(0, sentences, size=sentences), minlength=sentences)
        left_out = (counts == 0).astype(np.int64)
        if not left_out.any():
            continue
        in_bag = [_mean_score(counts, s, score) for s in stats]
        pick = int(np.argmax(in_bag))  # first maximum
        gain = _mean_score(left_out, stats[pick], score) - _mean_score(left_out, stats[0], score)
        gains.append(gain)
        ahead += int(gain > 0)
    if not gains:
        raise ValueError("no resample left a sentence out; use more samples")
    return SelectionTest(ahead / len(gains), float(np.mean(gains)), len(gains), tuple(gains))


def _mean_score(weights, statistics, score) -> float:
    corpus = np.einsum("s,sdk->dk", weights, statistics)  # per draw: statistics of the weighted corpus
    return float(np.mean([score([int(x) for x in draw]) for draw in corpus]))
