"""fairseq-preprocess -> fairseq-train -> fairseq-generate on tiny data, for every diffusion type."""
import sys

import pytest
import torch

from fairseq_tp.errors import UsageError
from conftest import DIFFUSION_TYPES, PLUGIN_DIR, generate, one_line, read_hypotheses, run_cli


@pytest.mark.parametrize("kind", DIFFUSION_TYPES)
def test_named_and_spelled_out_schedules_decode_alike(kind, toy_data, checkpoints, tmp_path):
    # uniform:4 of T = 50 spelled out (the rule: test_schedule)
    n_test = len((toy_data / "raw" / "test.src").read_text().splitlines())
    outputs = [generate(toy_data / "bin", checkpoints[kind], tmp_path / str(i), "--tp-schedule", schedule,
                        "--argmax-decoding", "--print-step") for i, schedule in enumerate(("uniform:4", "49,36,23,11"))]
    assert sorted(read_hypotheses(outputs[0])) == list(range(n_test))
    assert scored_hypotheses(outputs[0]) == scored_hypotheses(outputs[1])
    assert {line.split("\t")[1] for line in outputs[0].read_text().splitlines() if line.startswith("I-")} == {"4"}


@pytest.mark.parametrize("kind", ["absorbing", "multinomial"])
def test_same_seed_same_output_even_when_sampling(kind, toy_data, checkpoints, tmp_path):
    runs = [read_hypotheses(generate(toy_data / "bin", checkpoints[kind], tmp_path / f"r{i}",
                                     "--tp-schedule", "cosine:5", "--seed", "7", "--temperature", "1.0"))
            for i in range(2)]
    assert runs[0] == runs[1]


def test_history_has_one_state_per_pass_plus_the_start(toy_data, checkpoints, tmp_path):
    out = generate(toy_data / "bin", checkpoints["absorbing"], tmp_path, "--tp-schedule", "40,20,3",
                   "--retain-iter-history", "--argmax-decoding")
    history = [line for line in out.read_text().splitlines() if line.startswith("E-0_")]
    assert [h.split("\t")[0] for h in history] == ["E-0_0", "E-0_1", "E-0_2", "E-0_3"]
    assert history[0].split("\t")[1].split() == ["<unk>"] * len(history[0].split("\t")[1].split())


def scored_hypotheses(path):
    """The H- lines (id, score, text) of fairseq-generate's output."""
    return sorted(line for line in path.read_text().splitlines() if line.startswith("H-"))


def test_ema_weights_are_what_gets_decoded(toy_data, checkpoints, tmp_path):
    # A copy of the checkpoint whose model weights *are* the EMA weights, decoded plainly, is the
    # reference for --load-ema-weights; the checkpoint's own weights must decode differently.
    state = torch.load(checkpoints["absorbing"], map_location="cpu", weights_only=True)
    state["model"] = state["extra_state"]["ema"]
    ema_as_model = tmp_path / "ema-as-model.pt"
    torch.save(state, ema_as_model)
    deterministic = ("--tp-schedule", "uniform:4", "--argmax-decoding",
                     "--decoding-strategy", "reparam-uncond-deterministic-cosine")
    with_flag = generate(toy_data / "bin", checkpoints["absorbing"], tmp_path / "flag", *deterministic,
                         "--load-ema-weights")
    reference = generate(toy_data / "bin", ema_as_model, tmp_path / "reference", *deterministic)
    plain = generate(toy_data / "bin", checkpoints["absorbing"], tmp_path / "plain", *deterministic)
    assert len(scored_hypotheses(with_flag)) == 20
    assert scored_hypotheses(with_flag) == scored_hypotheses(reference)
    assert scored_hypotheses(with_flag) != scored_hypotheses(plain)


BAD_SCHEDULES = {
    "12,33": "fairseq-tp: error: --tp-schedule: schedule timesteps must be strictly decreasing, got 12,33",
    "49,49,3": "fairseq-tp: error: --tp-schedule: schedule timesteps must be strictly decreasing, got 49,49,3",
    "60,3": "fairseq-tp: error: --tp-schedule: schedule timestep 60 is out of range [0, 49] for a model with T = 50 steps",
    "uniform:0": "fairseq-tp: error: --tp-schedule: uniform:0: the number of steps must be at least 1",
    "missing.json": "fairseq-tp: error: --tp-schedule: cannot read schedule file missing.json: No such file or directory",
}


@pytest.mark.parametrize("schedule", ["12,33", "60,3"])
def test_bad_schedule_exits_with_one_line_and_no_traceback(schedule, toy_data, checkpoints, tmp_path):
    result = run_cli([sys.executable, "-m", "fairseq_cli.generate", str(toy_data / "bin"), "--user-dir", PLUGIN_DIR,
                      "--task", "diffusion_translation", "--path", str(checkpoints["absorbing"]),
                      "--gen-subset", "test", "--cpu", "--tp-schedule", schedule], cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == BAD_SCHEDULES[schedule]
    assert "H-" not in result.stdout


@pytest.mark.parametrize("schedule", sorted(BAD_SCHEDULES))
def test_bad_schedule_message_in_process(schedule, toy_data, checkpoints, tmp_path):
    with pytest.raises(UsageError) as exit_info:
        generate(toy_data / "bin", checkpoints["absorbing"], tmp_path, "--tp-schedule", schedule)
    assert one_line(exit_info.value) == BAD_SCHEDULES[schedule]
    assert not (tmp_path / "generate-test.txt").exists() or "H-" not in (tmp_path / "generate-test.txt").read_text()


def test_schedule_file_for_another_T_is_refused(toy_data, checkpoints, tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"timesteps": [99, 50, 0], "num_timesteps": 100}')
    with pytest.raises(UsageError) as exit_info:
        generate(toy_data / "bin", checkpoints["absorbing"], tmp_path, "--tp-schedule", str(path))
    assert one_line(exit_info.value) == (f"fairseq-tp: error: --tp-schedule: schedule file {path} was made for "
                                    "T = 100 but the checkpoint has T = 50")


def test_unsupported_rdm_option_in_a_checkpoint_is_one_line(toy_data, checkpoints, tmp_path):
    import argparse
    state = torch.load(checkpoints["absorbing"], map_location="cpu", weights_only=True)
    model_cfg = state["cfg"]["model"]
    if isinstance(model_cfg, argparse.Namespace):
        model_cfg.encoder_use_rpe = True
    else:
        model_cfg["encoder_use_rpe"] = True
    path = tmp_path / "rpe.pt"
    torch.save(state, path)
    result = run_cli([sys.executable, "-m", "fairseq_cli.generate", str(toy_data / "bin"), "--user-dir", PLUGIN_DIR,
                      "--task", "diffusion_translation", "--path", str(path), "--gen-subset", "test", "--cpu"])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "fairseq-tp: error: --encoder-use-rpe (relative position embeddings) is not supported by fairseq_tp, "
        "in training or in a checkpoint")
