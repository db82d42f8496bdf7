"""Continuous (DiffuSeq) models end to end: fairseq-train -> fairseq-generate -> fairseq-tp-search."""
import json
import sys

import pytest
import torch

from fairseq_tp.errors import UsageError
from conftest import FIXTURES, PLUGIN_DIR, TINY_MODEL, fairseq_main, generate, one_line, read_hypotheses, run_cli
from fairseq_tp.fairseq_search.cli import main as search_main

T = 2000


def train(data_bin, save_dir, *extra):
    fairseq_main("train", [
        str(data_bin), "--user-dir", PLUGIN_DIR, "--task", "diffusion_translation", "--criterion", "diffusion_loss",
        *TINY_MODEL, "--diffusion-type", "continuous", "--num-diffusion-timesteps", str(T), "--optimizer", "adam",
        "--lr", "0.001", "--max-update", "6", "--max-tokens", "1024", "--save-dir", str(save_dir),
        "--no-epoch-checkpoints", "--cpu", "--seed", "1", "--no-progress-bar", "--log-format", "simple", *extra])
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def checkpoint(toy_data, tmp_path_factory):
    return train(toy_data / "bin", tmp_path_factory.mktemp("continuous"))


def load(checkpoint):
    import fairseq_tp
    fairseq_tp.register()
    from fairseq import checkpoint_utils
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)])
    return models[0].eval(), task


def test_checkpoint_is_a_continuous_model_with_tied_rounding(checkpoint):
    model, _ = load(checkpoint)
    assert model.diffusion.continuous and model.diffusion.num_timesteps == T
    assert model.decoder.output_projection.weight is model.decoder.embed_tokens.weight
    state = model.state_dict()
    assert "decoder.x0_head.weight" in state and not any(k.startswith("diffusion.") for k in state)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize("flags", [[], ["--continuous-sampler", "ddpm", "--clamp-to-embeddings", "--seed", "3"],
                                   ["--ddim-eta", "0.5", "--iter-decode-with-beam", "3", "--seed", "3"]],
                         ids=["ddim", "ddpm-clamped", "ddim-eta-beam"])
def test_named_and_spelled_out_schedules_decode_alike(flags, toy_data, checkpoint, tmp_path):
    # uniform:4 of T = 2000 spelled out (the rule: test_schedule)
    n_test = len((toy_data / "raw" / "test.src").read_text().splitlines())
    outputs = [generate(toy_data / "bin", checkpoint, tmp_path / str(i), "--tp-schedule", schedule, "--print-step",
                        *flags) for i, schedule in enumerate(("uniform:4", "1999,1499,999,499"))]
    assert sorted(read_hypotheses(outputs[0])) == list(range(n_test))
    assert read_hypotheses(outputs[0]) == read_hypotheses(outputs[1])
    assert {line.split("\t")[1] for line in outputs[0].read_text().splitlines() if line.startswith("I-")} == {"4"}


def test_mbr_keeps_the_consensus_of_the_samples_a_plain_decode_draws(checkpoint):
    from fairseq_tp.diffusion import DecodingOptions, RandomSource
    from fairseq_tp.fairseq_glue.generator import DiffusionGenerator, Encoded, mbr_choice
    from fairseq_tp.schedules import Schedule
    model, task = load(checkpoint)
    task.load_dataset("test")
    dataset = task.dataset("test")
    sample = dataset.collater([dataset[i] for i in range(len(dataset))])
    schedule, k = Schedule.uniform(4, T), 3
    mbr = DiffusionGenerator(task.target_dictionary, schedule, DecodingOptions(continuous_sampler="ddpm", mbr_samples=k))
    single = DiffusionGenerator(task.target_dictionary, schedule, DecodingOptions(continuous_sampler="ddpm"))
    encoded = mbr.encode(model, sample["net_input"]["src_tokens"], sample["net_input"]["src_lengths"])
    rng = lambda: RandomSource([torch.Generator().manual_seed(7)])  # noqa: E731
    kept = [h[0] for h in mbr.decode(model, encoded, [schedule], rng())[0]]
    # the rows mbr decodes (each sentence k times, adjacent) as independent sentences, with the same noise
    order = torch.arange(encoded.batch_size).repeat_interleave(k)
    rows = Encoded(model.encoder.reorder_encoder_out(encoded.encoder_out, order), encoded.lengths[order],
                   encoded.batch_size * k, 1)
    samples = [h[0] for h in single.decode(model, rows, [schedule], rng())[0]]
    text = lambda h: task.target_dictionary.string(h["tokens"], extra_symbols_to_ignore=single.symbols_to_strip_from_output)  # noqa: E731
    differing = 0
    for i, hypo in enumerate(kept):
        texts = [text(h) for h in samples[k * i:k * i + k]]
        assert text(hypo) == texts[mbr_choice(texts)]
        differing += len(set(texts)) > 1
    assert differing >= len(kept) // 2, "the samples hardly differ: the test would not see a wrong choice"


def test_mbr_choice_is_the_consensus():
    from fairseq_tp.fairseq_glue.generator import mbr_choice
    assert mbr_choice(["x y z w", "a b c d", "a b c d", "a b c e"]) == 1
    assert mbr_choice(["a b c d e", "a b c d f", "q r s t u"]) == 0  # tie between the first two: first wins
    assert mbr_choice(["only"]) == 0


def test_schedules_decoded_together_get_the_noise_they_get_alone(checkpoint):
    from fairseq_tp.diffusion import DecodingOptions, RandomSource
    from fairseq_tp.fairseq_glue.generator import DiffusionGenerator
    from fairseq_tp.schedules import Schedule
    model, task = load(checkpoint)
    task.load_dataset("test")
    dataset = task.dataset("test")
    sample = dataset.collater([dataset[i] for i in range(8)])
    schedules = [Schedule.uniform(4, T), Schedule((1999, 1200, 400, 0), T)]
    generator = DiffusionGenerator(task.target_dictionary, schedules[0],
                                   DecodingOptions(continuous_sampler="ddpm", mbr_samples=2))
    encoded = generator.encode(model, sample["net_input"]["src_tokens"], sample["net_input"]["src_lengths"])
    rng = lambda n: RandomSource([torch.Generator().manual_seed(4) for _ in range(n)])  # noqa: E731
    together = generator.decode(model, encoded, schedules, rng(2))
    alone = generator.decode(model, encoded, schedules[1:], rng(1))
    tokens = lambda hypos: [h[0]["tokens"].tolist() for h in hypos]  # noqa: E731
    assert tokens(together[1]) == tokens(alone[0])


def test_search_finds_a_schedule_for_T_2000_that_fairseq_generate_reads(toy_data, checkpoint, tmp_path):
    output = tmp_path / "schedule.json"
    search_main([str(toy_data / "bin"), "--user-dir", PLUGIN_DIR, "--path", str(checkpoint), "--cpu",
                 "--no-progress-bar", "--output", str(output), "--steps", "4", "--shots", "8", "--budget", "5",
                 "--continuous-sampler", "ddpm"])
    record = json.loads(output.read_text())
    assert record["num_timesteps"] == T and record["steps"] == 4 and record["timesteps"][0] == T - 1
    assert record["uniform_timesteps"] == [1999, 1499, 999, 499] and record["evaluations"] == 5
    assert record["decoding"]["continuous_sampler"] == "ddpm"
    out = generate(toy_data / "bin", checkpoint, tmp_path / "gen", "--tp-schedule", str(output),
                   "--continuous-sampler", "ddpm", "--print-step")
    assert len(read_hypotheses(out)) == 20
    assert {line.split("\t")[1] for line in out.read_text().splitlines() if line.startswith("I-")} == {"4"}


BAD_DECODING = {
    "--ddim-eta 2": "--ddim-eta must be in [0, 1], got 2.0",
    "--mbr-samples 0": "--mbr-samples must be a positive integer, got 0",
    "--decoding-strategy reparam-cond-deterministic-linear":
        "--decoding-strategy reparam-cond-deterministic-linear is for discrete diffusion; continuous models "
        "decode with --continuous-sampler ddim|ddpm",
}


@pytest.mark.parametrize("flags", sorted(BAD_DECODING))
def test_bad_decoding_options_get_one_line(flags, toy_data, checkpoint, tmp_path):
    with pytest.raises(UsageError) as exit_info:
        generate(toy_data / "bin", checkpoint, tmp_path, "--tp-schedule", "uniform:4", *flags.split())
    assert one_line(exit_info.value) == "fairseq-tp: error: " + BAD_DECODING[flags]


def test_a_choice_outside_its_list_is_refused_by_fairseqs_parser(toy_data, checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        generate(toy_data / "bin", checkpoint, tmp_path, "--continuous-sampler", "euler")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(  # "PROG: error: ..." (PROG is pytest's here)
        ": error: argument --continuous-sampler: invalid choice: 'euler' (choose from 'ddim', 'ddpm')")


@pytest.mark.fixture_dir("rdm-toy")
def test_continuous_options_on_a_discrete_model_are_refused(tmp_path):
    rdm = FIXTURES / "rdm-toy"
    with pytest.raises(UsageError) as exit_info:
        generate(rdm / "data-bin", rdm / "absorbing.pt", tmp_path, "--continuous-sampler", "ddpm")
    assert one_line(exit_info.value) == ("fairseq-tp: error: --continuous-sampler, --ddim-eta and --clamp-to-embeddings "
                                    "apply only to --diffusion-type continuous models; this one is discrete")


def test_bad_search_and_training_options_get_one_line(toy_data, checkpoint, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        search_main([str(toy_data / "bin"), "--path", str(checkpoint), "--cpu", "--steps", "4",
                     "--output", str(tmp_path / "s.json"), "--ddim-eta", "-1"])
    assert str(exit_info.value) == "fairseq-tp-search: error: --ddim-eta must be in [0, 1], got -1.0"
    with pytest.raises(UsageError) as exit_info:
        train(toy_data / "bin", tmp_path / "ls", "--label-smoothing", "0.1")
    assert one_line(exit_info.value).startswith("fairseq-tp: error: --label-smoothing applies to discrete diffusion")


def test_command_line_error_has_no_traceback(toy_data, checkpoint, tmp_path):
    result = run_cli([sys.executable, "-m", "fairseq_cli.generate", str(toy_data / "bin"), "--user-dir", PLUGIN_DIR,
                      "--task", "diffusion_translation", "--path", str(checkpoint), "--gen-subset", "test", "--cpu",
                      "--mbr-samples", "0"], cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "fairseq-tp: error: --mbr-samples must be a positive integer, got 0"
