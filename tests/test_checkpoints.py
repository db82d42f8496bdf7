"""Checkpoints load with torch's weights_only=True left on."""
import argparse

import pytest
import torch

import fairseq_tp
from conftest import FIXTURES

fairseq_tp.register()


def test_plugin_allow_lists_namespace_and_numpy_arrays_only():
    from fairseq_tp.compat import SAFE_GLOBALS
    names = {getattr(g[0] if isinstance(g, tuple) else g, "__name__", "") for g in SAFE_GLOBALS}
    assert names == {"Namespace", "ndarray", "dtype", "Int64DType", "_reconstruct"}


@pytest.mark.parametrize("name", ["absorbing.pt", "multinomial.pt"])
def test_rdm_checkpoints_load_with_weights_only(name):
    state = torch.load(FIXTURES / "rdm-toy" / name, map_location="cpu", weights_only=True)
    assert isinstance(state["cfg"]["model"], argparse.Namespace)


def test_eval_bleu_checkpoint_needs_numpy_arrays_and_loads(checkpoints):
    from fairseq_tp.compat import SAFE_GLOBALS
    state = torch.load(checkpoints["absorbing"], map_location="cpu", weights_only=True)
    assert "ema" in state["extra_state"]
    # Why numpy is allowed: fairseq-train --eval-bleu pickles its n-gram counts as numpy arrays.
    torch.serialization.clear_safe_globals()
    try:
        torch.serialization.add_safe_globals([argparse.Namespace])
        with pytest.raises(Exception, match="numpy"):
            torch.load(checkpoints["absorbing"], map_location="cpu", weights_only=True)
    finally:
        torch.serialization.add_safe_globals(SAFE_GLOBALS)
