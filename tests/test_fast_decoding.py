"""The decode hot path against the computation it replaced: the x0 choice from the logits without a
[B, L, V] log-softmax or copy; the decoder layers with written-out attention and the encoder attention's
keys and values kept across passes; the encoder layers' attention written out.  The reference below is the
plain computation (a log-softmax over a copy of the logits, then argmax or Gumbel-max; fairseq's own encoder
and decoder layers).  Under the same seed both must give the same hypotheses, token for token, for every
family and strategy: the same random numbers are drawn, so this holds for the random settings too."""
import math

import pytest
import torch
import torch.nn.functional as F

from fairseq_tp.diffusion import DecodingOptions
from fairseq_tp.diffusion.absorbing import AbsorbingDiffusion
from fairseq_tp.diffusion.base import DiscreteDiffusion
from fairseq_tp.diffusion.decoding import pick_tokens
from fairseq_tp.diffusion.multinomial import MultinomialDiffusion, ReparamMultinomialDiffusion
from fairseq_tp.schedules import Schedule
from conftest import FIXTURES

RDM = FIXTURES / "rdm-toy"

# (strategy, argmax, passes, length beam, adaptive, temperature annealing)
SETTINGS = {
    "default-argmax-4": ("default", True, 4, 1, False, False),
    "default-argmax-10-beam3": ("default", True, 10, 3, False, False),
    "default-adaptive-10": ("default", True, 10, 1, True, False),
    "default-sampled-annealed-10": ("default", False, 10, 1, False, True),
    "reparam-uncond-deterministic-cosine-10": ("reparam-uncond-deterministic-cosine", True, 10, 1, False, False),
    "reparam-cond-deterministic-linear-4-beam3": ("reparam-cond-deterministic-linear", True, 4, 3, False, False),
    "reparam-uncond-stochastic1.0-cosine-4-sampled": ("reparam-uncond-stochastic1.0-cosine", False, 4, 1, False, False),
}


def reference_log_probs(diffusion, logits, tokens, non_special):
    """log p(x0 | x_t) as a log-softmax over a copy of the logits."""
    logits = logits.clone()
    if isinstance(diffusion, ReparamMultinomialDiffusion):
        logits[..., diffusion.special_ids] = -30.0
    elif isinstance(diffusion, AbsorbingDiffusion):
        logits[..., diffusion.mask] = -math.inf
    log_probs = torch.log_softmax(logits, dim=-1)
    if isinstance(diffusion, MultinomialDiffusion):
        one_hot = torch.log(F.one_hot(tokens, diffusion.vocab_size).float().clamp(min=1e-30))
        log_probs = torch.where(non_special.unsqueeze(-1), log_probs, one_hot)
    return log_probs


def reference_choice(diffusion, logits, tokens, non_special, options, rng):
    return pick_tokens(reference_log_probs(diffusion, logits, tokens, non_special), options, rng)


def load(checkpoint, data, limit=None):
    import fairseq_tp
    fairseq_tp.register()
    from fairseq import checkpoint_utils
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)],
                                                                    arg_overrides={"data": str(data)})
    task.load_dataset("test")
    dataset = task.dataset("test")
    size = min(limit or len(dataset), len(dataset))
    batches = [dataset.collater([dataset[i] for i in range(start, min(start + 50, size))])
               for start in range(0, size, 50)]
    return models[0].eval(), task, batches


def decode_all(model, task, batches, setting):
    from fairseq_tp.fairseq_glue.generator import DiffusionGenerator
    strategy, argmax, passes, beam, adaptive, annealing = SETTINGS[setting]
    options = DecodingOptions(strategy, argmax=argmax, temperature_annealing=annealing)
    generator = DiffusionGenerator(task.target_dictionary, Schedule.uniform(passes, model.diffusion.num_timesteps),
                                   options, beam_size=beam, adaptive=adaptive)
    torch.manual_seed(1)
    hypos = [generator.generate([model], batch) for batch in batches]
    return [(h[0]["tokens"].tolist(), h[0]["positional_scores"].tolist()) for batch in hypos for h in batch]


def assert_same_as_reference(model, task, batches, setting, monkeypatch):
    fast = decode_all(model, task, batches, setting)
    with monkeypatch.context() as patch:
        patch.setattr(DiscreteDiffusion, "x0_log_probs", reference_log_probs)
        patch.setattr(DiscreteDiffusion, "x0_choice", reference_choice)
        patch.setattr(model.decoder, "plain_layers", False)
        patch.setattr(model.encoder, "plain_layers", False)
        reference = decode_all(model, task, batches, setting)
    assert [tokens for tokens, _ in fast] == [tokens for tokens, _ in reference]
    for (_, fast_scores), (_, reference_scores) in zip(fast, reference):
        # float32 sums in another order: ~1e-5 apart after the encoder, decoder and log-softmax
        assert fast_scores == pytest.approx(reference_scores, rel=1e-4, abs=1e-4)


@pytest.mark.fixture_dir("rdm-toy")
@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("checkpoint", ["absorbing", "multinomial"])
def test_rdm_checkpoints_decode_as_the_reference_computation(checkpoint, setting, monkeypatch):
    model, task, batches = load(RDM / f"{checkpoint}.pt", RDM / "data-bin")
    assert model.decoder.plain_layers and model.encoder.plain_layers  # the fast layers are what runs
    assert_same_as_reference(model, task, batches, setting, monkeypatch)


@pytest.mark.parametrize("setting", ["default-argmax-4", "reparam-uncond-deterministic-cosine-10",
                                     "reparam-uncond-stochastic1.0-cosine-4-sampled"])
@pytest.mark.parametrize("kind", ["reparam-absorbing", "reparam-multinomial"])
def test_reparameterised_families_decode_as_the_reference_computation(kind, setting, checkpoints, toy_data,
                                                                      monkeypatch):
    model, task, batches = load(checkpoints[kind], toy_data / "bin")
    assert_same_as_reference(model, task, batches, setting, monkeypatch)


@pytest.mark.fixture_dir("bible-kjv-web")
def test_a_pre_norm_real_text_model_decodes_as_the_reference_computation(monkeypatch):
    """The Bible probe: pre-norm layers (RDM's checkpoints are post-norm), 5,780 BPE types, real verses."""
    bible = FIXTURES / "bible-kjv-web"
    model, task, batches = load(bible / "absorbing.pt", bible / "data-bin", limit=100)
    assert model.decoder.layers[0].normalize_before and model.decoder.plain_layers and model.encoder.plain_layers
    assert_same_as_reference(model, task, batches, "reparam-uncond-deterministic-cosine-10", monkeypatch)


def test_argmax_choice_equals_log_softmax_max():
    from fairseq_tp.diffusion.decoding import argmax_log_prob
    logits = torch.randn(7, 5, 300) * 6
    logits[0, 0, :] = 0.0  # a tie: the first index, as max over log-probabilities
    expected_scores, expected_tokens = torch.log_softmax(logits, -1).max(-1)
    scores, tokens = argmax_log_prob(logits.clone())
    assert torch.equal(tokens, expected_tokens)
    assert torch.allclose(scores, expected_scores, rtol=0, atol=2e-6)
