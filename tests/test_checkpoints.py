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


@pytest.mark.parametrize("before", [False, True])
def test_training_flushes_denormals_and_restores_the_callers_setting(before):
    from fairseq_tp.tasks.diffusion_translation import denormals_flushed, flushed_denormals

    if not torch.set_flush_denormal(before):
        pytest.skip("this CPU cannot flush denormals")
    try:
        with flushed_denormals():
            assert denormals_flushed()
        assert denormals_flushed() == before
    finally:
        torch.set_flush_denormal(False)


def test_cpu_train_step_runs_with_denormals_flushed(monkeypatch):
    from fairseq.tasks.translation import TranslationTask
    from fairseq_tp.tasks.diffusion_translation import DiffusionTranslationTask, denormals_flushed

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    seen = []
    monkeypatch.setattr(TranslationTask, "train_step",
                        lambda self, sample, model, *args, **kwargs: seen.append(denormals_flushed()) or "stepped")
    task = object.__new__(DiffusionTranslationTask)  # train_step needs no task state
    assert task.train_step({}, torch.nn.Linear(1, 1), None, None, 0) == "stepped"
    assert seen == [True] and not denormals_flushed()
