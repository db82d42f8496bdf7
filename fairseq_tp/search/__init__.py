"""Few-shot temporal pruning: search the decoder's step schedule by Bayesian optimisation.

A pure library (no fairseq): the caller supplies an :class:`Objective` that
scores schedules (BLEU on a few validation sentences).
"""
from .front import Front, FrontPoint, divide_budget, search_front
from .loop import STRATEGIES, SearchResult, SearchSettings, default_n_init, run_search
from .objective_api import Objective
from .optimiser import Proposer, RandomProposer, derive_seed, make_proposer
from .significance import SelectionTest, selection_confidence
from .confirm import Confirmed, candidates, choose_confirmed, sentences_digest
from .space import SEARCHED, ScheduleSpace
from .trial_log import RESUMABLE_CONFIG_KEYS, Confirmation, Trial, TrialLog, read_confirmations, read_trial_log

__all__ = [
    "Confirmation",
    "Confirmed",
    "SEARCHED",
    "candidates",
    "choose_confirmed",
    "read_confirmations",
    "sentences_digest",
    "Front",
    "FrontPoint",
    "divide_budget",
    "search_front",
    "plot_front",
    "BoTorchProposer",
    "Objective",
    "Proposer",
    "RESUMABLE_CONFIG_KEYS",
    "RandomProposer",
    "STRATEGIES",
    "ScheduleSpace",
    "SearchResult",
    "SearchSettings",
    "SelectionTest",
    "Trial",
    "TrialLog",
    "default_n_init",
    "derive_seed",
    "make_proposer",
    "plot_trials",
    "read_trial_log",
    "run_search",
    "selection_confidence",
]


def __getattr__(name):
    # The plots need matplotlib and the proposer BoTorch: imported when asked for, not with the package.
    if name in ("plot_front", "plot_trials"):
        from . import plot
        return getattr(plot, name)
    if name == "BoTorchProposer":
        from .gp import BoTorchProposer
        return BoTorchProposer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
