"""Which candidate the generator keeps, checked by brute force on a tiny trained model: the best mean
score among the length-beam candidates (first on ties), and MBR's pick among the very samples a plain
decode draws under the same noise (its choice rule on hand-made sentences: test_continuous_end_to_end).  The model is the RDM fixture's absorbing checkpoint (trained
well enough that the kept candidate varies between sentences)."""
import pytest
import torch

from fairseq_tp.diffusion import DecodingOptions, RandomSource
from fairseq_tp.fairseq_glue.generator import mbr_choice
from fairseq_tp.schedules import Schedule
from conftest import FIXTURES

RDM = FIXTURES / "rdm-toy"
pytestmark = pytest.mark.fixture_dir("rdm-toy")


def load():
    import fairseq_tp
    fairseq_tp.register()
    from fairseq import checkpoint_utils
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(RDM / "absorbing.pt")],
                                                                    arg_overrides={"data": str(RDM / "data-bin")})
    task.load_dataset("test")
    dataset = task.dataset("test")
    return models[0].eval(), task, dataset.collater([dataset[i] for i in range(len(dataset))])


def every_row(generator, model, encoded, schedule, rng):
    """Decode the expanded rows of ``encoded`` as independent sentences: every candidate, none dropped."""
    from fairseq_tp.fairseq_glue.generator import Encoded
    rows = Encoded(encoded.encoder_out, encoded.lengths, encoded.lengths.size(0), 1)
    return [h[0] for h in generator.decode(model, rows, [schedule], rng)[0]]


def test_length_beam_keeps_the_best_mean_score_first_on_ties():
    from fairseq_tp.fairseq_glue.generator import DiffusionGenerator
    model, task, sample = load()
    schedule = Schedule.uniform(4, 50)
    options = DecodingOptions("reparam-uncond-deterministic-cosine", argmax=True)
    beam = DiffusionGenerator(task.target_dictionary, schedule, options, beam_size=3)
    single = DiffusionGenerator(task.target_dictionary, schedule, options, beam_size=1)
    net_input = sample["net_input"]
    encoded = beam.encode(model, net_input["src_tokens"], net_input["src_lengths"])
    kept = [h[0] for h in beam.decode(model, encoded, [schedule], RandomSource())[0]]
    candidates = every_row(single, model, encoded, schedule, RandomSource())
    assert len(kept) == 200 and len(candidates) == 600
    choices = []
    for i, hypo in enumerate(kept):
        mine = candidates[3 * i:3 * i + 3]
        scores = [float(c["score"]) for c in mine]
        best = scores.index(max(scores))  # index() finds the first maximum
        choices.append(best)
        assert torch.equal(hypo["tokens"], mine[best]["tokens"])
    assert len(set(choices)) > 1, "every sentence kept the same candidate: the test would not see a wrong choice"


def test_mbr_keeps_the_sample_closest_to_the_others():
    from fairseq_tp.fairseq_glue.generator import DiffusionGenerator, Encoded
    model, task, sample = load()
    schedule = Schedule.uniform(4, 50)
    k = 3
    mbr = DiffusionGenerator(task.target_dictionary, schedule, DecodingOptions(mbr_samples=k))
    single = DiffusionGenerator(task.target_dictionary, schedule, DecodingOptions())
    net_input = sample["net_input"]
    encoded = mbr.encode(model, net_input["src_tokens"], net_input["src_lengths"])
    kept = [h[0] for h in mbr.decode(model, encoded, [schedule], RandomSource([torch.Generator().manual_seed(7)]))[0]]
    # The same rows mbr decodes (each sentence k times, adjacent), with the same noise, all kept.
    order = torch.arange(encoded.lengths.size(0)).repeat_interleave(k)
    expanded = Encoded(model.encoder.reorder_encoder_out(encoded.encoder_out, order), encoded.lengths[order],
                       encoded.batch_size * k, 1)
    samples = every_row(single, model, expanded, schedule, RandomSource([torch.Generator().manual_seed(7)]))
    text = lambda h: task.target_dictionary.string(h["tokens"], extra_symbols_to_ignore=single.symbols_to_strip_from_output)  # noqa: E731
    differing = 0
    for i, hypo in enumerate(kept):
        texts = [text(h) for h in samples[k * i:k * i + k]]
        assert text(hypo) == texts[mbr_choice(texts)]  # mbr_choice itself: test_continuous_end_to_end
        differing += len(set(texts)) > 1
    assert differing >= 50, "the samples hardly differ: the test would not see a wrong choice"
