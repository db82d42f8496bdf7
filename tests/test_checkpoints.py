"""Checkpoints load with torch's weights_only=True left on."""
import argparse

import pytest
import torch

import fairseq_tp
from conftest import FIXTURES

fairseq_tp.register()


def loads_with(path, allowed):
    """Whether ``path`` loads with weights_only and exactly ``allowed`` on torch's allow-list."""
    from fairseq_tp.fairseq_glue.checkpoints import SAFE_GLOBALS
    torch.serialization.clear_safe_globals()
    try:
        torch.serialization.add_safe_globals(list(allowed))
        torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception as e:  # torch's UnpicklingError names the missing type
        assert "add_safe_globals" in str(e) or "weights_only" in str(e), e
        return False
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(SAFE_GLOBALS)


def test_every_allow_listed_type_is_needed_by_a_real_checkpoint(checkpoints):
    # fairseq-train --eval-bleu pickles numpy n-gram counts beside the argparse.Namespace config.
    from fairseq_tp.fairseq_glue.checkpoints import SAFE_GLOBALS
    path = checkpoints["absorbing"]
    current = [g for g in SAFE_GLOBALS if not isinstance(g, tuple)]  # the tuple: numpy 1's name for _reconstruct
    assert loads_with(path, SAFE_GLOBALS)
    for dropped in current:
        assert not loads_with(path, [g for g in SAFE_GLOBALS if g is not dropped]), f"{dropped} is not needed"
    # torch's own scan of the pickle names nothing beyond the list.
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    assert needed <= {f"{g.__module__}.{g.__qualname__}" for g in current}


@pytest.mark.fixture_dir("rdm-toy")
@pytest.mark.parametrize("name", ["absorbing.pt", "multinomial.pt"])
def test_rdm_checkpoints_load_with_weights_only(name):
    state = torch.load(FIXTURES / "rdm-toy" / name, map_location="cpu", weights_only=True)
    assert isinstance(state["cfg"]["model"], argparse.Namespace)


@pytest.mark.parametrize("before", [False, True])
def test_training_flushes_denormals_and_restores_the_callers_setting(before):
    from fairseq_tp.fairseq_glue.denormals import denormals_flushed, flushed_denormals

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
    from fairseq_tp.fairseq_glue.task import DiffusionTranslationTask
    from fairseq_tp.fairseq_glue.denormals import denormals_flushed

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    seen = []
    monkeypatch.setattr(TranslationTask, "train_step",
                        lambda self, sample, model, *args, **kwargs: seen.append(denormals_flushed()) or "stepped")
    task = object.__new__(DiffusionTranslationTask)  # train_step needs no task state
    assert task.train_step({}, torch.nn.Linear(1, 1), None, None, 0) == "stepped"
    assert seen == [True] and not denormals_flushed()
