"""The schedule search bound to fairseq models: few-shot BLEU objective, scorers, loading, the search's
options, orchestration (:func:`tune`) and the ``fairseq-tp-search`` command (``cli``)."""
from .config import SearchConfig
from .tune import SearchReport, tune

__all__ = ["SearchConfig", "SearchReport", "tune"]
