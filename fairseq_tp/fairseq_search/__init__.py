"""The schedule search bound to fairseq models: few-shot BLEU objective, scorers, loading, the search's
options, orchestration (:func:`tune`) and the ``fairseq-tp-search`` command (``cli``)."""
import logging

# fairseq logs "Please install tensorboardX" whenever it is imported (and one of its models has set the root
# logger to DEBUG by then): an optional dependency of speech tasks, nothing for our users.
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)

from .config import SearchConfig  # noqa: E402
from .decoder import SubsetDecoder  # noqa: E402
from .tune import SearchReport, tune  # noqa: E402

__all__ = ["SearchConfig", "SearchReport", "SubsetDecoder", "tune"]
