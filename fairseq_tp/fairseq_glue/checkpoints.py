"""What makes fairseq 0.12 checkpoints load on today's torch, and RDM's --load-ema-weights.

* torch >= 2.6 unpickles with ``weights_only=True``; fairseq checkpoints also
  pickle ``argparse.Namespace`` (the legacy model config), and ``fairseq-train
  --eval-bleu`` stores its BLEU n-gram counts as numpy int64 arrays in
  ``extra_state["metrics"]``.  We allow-list exactly those types (tests load
  real checkpoints of both kinds); weights_only stays on.
* Stock fairseq-generate loads ``state["model"]``; no task or model hook sees
  ``extra_state["ema"]``.  While a task with ``load_ema_weights`` loads its
  models, fairseq's checkpoint reader returns the EMA weights as the model's.
"""
import argparse
import contextvars
import functools

import numpy as np
import torch
from fairseq import checkpoint_utils

from ..errors import UsageError

_numpy_core = np._core if hasattr(np, "_core") else np.core
SAFE_GLOBALS = [
    argparse.Namespace,
    np.ndarray,
    np.dtype,
    type(np.dtype(np.int64)),
    _numpy_core.multiarray._reconstruct,
    # the name numpy 1 pickles it under, so older checkpoints load on numpy 2 too
    (_numpy_core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
]

_load_ema = contextvars.ContextVar("fairseq_tp_load_ema", default=False)


def allow_fairseq_checkpoints() -> None:
    torch.serialization.add_safe_globals(SAFE_GLOBALS)


def swap_in_ema(state: dict, path: str) -> dict:
    ema = (state.get("extra_state") or {}).get("ema")
    if ema is None:
        raise UsageError(f"--load-ema-weights: {path} holds no EMA weights (train with --store-ema)")
    state["model"] = ema
    return state


def install_ema_loading() -> None:
    """Wrap fairseq's checkpoint loading once; inert unless a task asks for EMA weights."""
    if getattr(checkpoint_utils, "_fairseq_tp_wrapped", False):
        return
    read_checkpoint = checkpoint_utils.load_checkpoint_to_cpu
    load_ensemble = checkpoint_utils.load_model_ensemble_and_task

    @functools.wraps(read_checkpoint)
    def load_checkpoint_to_cpu(path, *args, **kwargs):
        state = read_checkpoint(path, *args, **kwargs)
        return swap_in_ema(state, path) if _load_ema.get() else state

    @functools.wraps(load_ensemble)
    def load_model_ensemble_and_task(filenames, arg_overrides=None, task=None, *args, **kwargs):
        token = _load_ema.set(bool(getattr(task, "wants_ema_weights", False)))
        try:
            return load_ensemble(filenames, arg_overrides, task, *args, **kwargs)
        finally:
            _load_ema.reset(token)

    checkpoint_utils.load_checkpoint_to_cpu = load_checkpoint_to_cpu
    checkpoint_utils.load_model_ensemble_and_task = load_model_ensemble_and_task
    checkpoint_utils._fairseq_tp_wrapped = True
