"""Few-shot temporal pruning: search the decoder's step schedule by Bayesian optimisation.

A pure library (no fairseq): the caller supplies an :class:`Objective` that
scores schedules (BLEU on a few validation sentences).
"""
from .front import Front, FrontPoint, divide_budget, search_front
from .loop import STRATEGIES, SearchResult, SearchSettings, default_n_init, run_search
from .objective_api import Objective
from .optimiser import BoTorchProposer, Proposer, RandomProposer, derive_seed, make_proposer
from .plot import plot_front, plot_trials
from .significance import SelectionTest, selection_confidence
from .space import ScheduleSpace, SearchError
from .trial_log import RESUMABLE_CONFIG_KEYS, Trial, TrialLog, read_trial_log

__all__ = [
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
    "SearchError",
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
