"""fairseq-tp: few-shot temporal pruning for diffusion text generators.

Layers: ``fairseq_tp.diffusion`` and ``fairseq_tp.schedule`` are pure torch;
``tasks``, ``models``, ``criterions`` and ``generator`` are the fairseq glue
(fairseq imports them through ``--user-dir fairseq_tp``, or call
:func:`register`); ``fairseq_tp.search`` tunes schedules.
"""
__version__ = "0.1.0"


def register() -> None:
    """Register the task, model and criterion with fairseq (what --user-dir does)."""
    from . import criterions, models, tasks  # noqa: F401
