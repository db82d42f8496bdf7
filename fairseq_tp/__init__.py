"""fairseq-tp: few-shot temporal pruning for diffusion text generators.

Layers, one folder each:

- ``diffusion/`` and ``schedules/``: the diffusion processes and step schedules, pure torch (no fairseq);
- ``fairseq_glue/``: the fairseq task, model, criterion and generator (what ``--user-dir fairseq_tp`` loads);
- ``search/``: the schedule search as a fairseq-free library (space, BoTorch and random proposers, trial log);
- ``fairseq_search/``: the search bound to fairseq models: few-shot BLEU objective, loading, options,
  orchestration and the ``fairseq-tp-search`` command.
"""
import sys

__version__ = "0.1.0"


def register() -> None:
    """Register the task, model and criterion with fairseq (what --user-dir does)."""
    from . import fairseq_glue  # noqa: F401


# fairseq's --user-dir imports this package with fairseq already loaded; a fairseq-free
# import (e.g. of fairseq_tp.diffusion) must not pull fairseq in.
if "fairseq" in sys.modules:
    register()
