"""fairseq-tp-search and fairseq-generate under misuse: a locked trial log, outputs that never clobber inputs,
and one line for bad option values."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import FIXTURES, PLUGIN_DIR, run_cli
from fairseq_tp.fairseq_search.cli import main as search_main
from fairseq_tp.search import read_trial_log

RDM = FIXTURES / "rdm-toy"


def search_args(output, *extra, checkpoint=None):
    return [str(RDM / "data-bin"), "--user-dir", PLUGIN_DIR, "--path", str(checkpoint or RDM / "absorbing.pt"),
            "--cpu", "--no-progress-bar", "--batch-size", "50", "--steps", "4", "--output", str(output), *extra]


def refused(*args):
    with pytest.raises(SystemExit) as exit_info:
        search_main(list(args))
    line = str(exit_info.value.code)
    assert line.startswith("fairseq-tp-search: error: ") and "\n" not in line, line
    return line


@pytest.mark.fixture_dir("rdm-toy")
def test_a_second_resume_on_a_log_in_use_is_refused_naming_the_holder(tmp_path):
    output = tmp_path / "s.json"
    common = ["--shots", "all", "--seed", "1", "--confirm-top", "0", "--search-space", "timesteps"]
    search_main(search_args(output, *common, "--budget", "3"))
    # A long resumed search (all 200 shots, one thread) holds the log while a second --resume starts.
    first = subprocess.Popen(["fairseq-tp-search", *search_args(output, *common, "--budget", "400", "--resume")],
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "s.trials.jsonl.lock"
    deadline = time.time() + 120
    while time.time() < deadline and not (lock.exists() and lock.read_text().strip() == str(first.pid)):
        time.sleep(0.05)
    assert first.poll() is None, "the first search ended before the second could start"
    line = refused(*search_args(output, *common, "--budget", "400", "--resume"))
    assert line == (f"fairseq-tp-search: error: trial log {tmp_path / 's.trials.jsonl'} is in use by another search "
                    f"(pid {first.pid}); wait for it to end or choose another --log")
    first.kill()
    first.communicate()
    _, trials = read_trial_log(str(tmp_path / "s.trials.jsonl"), 50)  # whole, each index once
    assert [t.index for t in trials] == list(range(len(trials))) and 3 <= len(trials) < 400
    search_main(search_args(output, *common, "--budget", str(len(trials) + 1), "--resume"))  # the lock went with it


@pytest.mark.fixture_dir("rdm-toy")
def test_outputs_never_clobber_inputs_or_each_other(tmp_path):
    checkpoint = tmp_path / "ckpt.pt"
    checkpoint.write_bytes((RDM / "absorbing.pt").read_bytes())
    before = checkpoint.read_bytes()
    link = tmp_path / "link.json"
    link.symlink_to(checkpoint)
    out = tmp_path / "s.json"
    cases = [
        (search_args(checkpoint, checkpoint=checkpoint), f"--output {checkpoint} is also --path"),
        (search_args(link, checkpoint=checkpoint), f"--output {link} is also --path"),
        (search_args(out, "--log", str(out), checkpoint=checkpoint), f"--log {out} is also --output"),
        (search_args(out, "--plot", str(out), checkpoint=checkpoint), f"--plot {out} is also --output"),
        (search_args(out, "--steps", "2,3", "--front-plot", str(tmp_path / "f.xyz"), checkpoint=checkpoint),
         f"--front-plot {tmp_path / 'f.xyz'}: matplotlib cannot write .xyz"),
        (search_args(out, "--plot", str(tmp_path / "s.trials.jsonl"), checkpoint=checkpoint),
         f"--log {tmp_path / 's.trials.jsonl'} is also --plot"),
        (search_args(RDM / "data-bin" / "dict.src.txt", checkpoint=checkpoint), "is also the data file dict.src.txt"),
        (search_args(out, "--plot", str(tmp_path / "p.txt"), checkpoint=checkpoint),
         f"--plot {tmp_path / 'p.txt'}: matplotlib cannot write .txt"),
        (search_args(out, "--steps", "2,2", checkpoint=checkpoint), "--steps lists a number of steps twice: 2,2"),
        (search_args(out, "--time-budget", "inf", checkpoint=checkpoint),
         "--time-budget must be a positive number of seconds, got inf"),
    ]
    for args, message in cases:
        line = refused(*args)
        assert message in line, (message, line)
    assert checkpoint.read_bytes() == before and not out.exists()
    assert not (tmp_path / "s.trials.jsonl").exists()


@pytest.mark.fixture_dir("rdm-toy")
def test_an_empty_schedule_is_refused_by_fairseq_generate(tmp_path):
    out = run_cli(["fairseq-generate", str(RDM / "data-bin"), "--user-dir", PLUGIN_DIR, "--task",
                   "diffusion_translation", "--path", str(RDM / "absorbing.pt"), "--gen-subset", "test", "--cpu",
                   "--tp-schedule", ""])
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1] == ("fairseq-tp: error: --tp-schedule: the schedule is empty: give "
                                                   "at least one timestep")


@pytest.mark.fixture_dir("rdm-toy")
def test_plotting_prints_no_matplotlib_debug_lines(tmp_path):
    out = run_cli(["fairseq-tp-search", *search_args(tmp_path / "s.json", "--budget", "3", "--shots", "10",
                                                      "--plot", str(tmp_path / "p.png"), "--confirm-top", "0")])
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "p.png").stat().st_size > 0 and "matplotlib" not in out.stderr


@pytest.mark.fixture_dir("rdm-toy")
def test_deeply_nested_json_and_a_missing_data_directory_get_one_line(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    out = run_cli(["fairseq-generate", str(RDM / "data-bin"), "--user-dir", PLUGIN_DIR, "--task",
                   "diffusion_translation", "--path", str(RDM / "absorbing.pt"), "--gen-subset", "test", "--cpu",
                   "--tp-schedule", str(deep)])
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (f"fairseq-tp: error: --tp-schedule: schedule file {deep} is nested "
                                                   f"too deeply to be a schedule file")
    output = tmp_path / "s.json"
    search_main(search_args(output, "--budget", "2", "--shots", "5", "--confirm-top", "0"))
    log = tmp_path / "s.trials.jsonl"
    log.write_text(log.read_text() + "[" * 200_000 + "]" * 200_000 + "\n")
    line = refused(*search_args(output, "--budget", "3", "--shots", "5", "--confirm-top", "0", "--resume"))
    assert line == f"fairseq-tp-search: error: trial log {log} is not a valid trial log (line 4 is not JSON); " \
                   f"remove it or choose another --log"
    missing = tmp_path / "no" / "such"
    line = refused(str(missing), *search_args(tmp_path / "t.json")[1:])
    assert line == f"fairseq-tp-search: error: data directory {missing} does not exist"


@pytest.mark.fixture_dir("rdm-toy")
def test_ctrl_c_ends_in_one_line_exit_130_and_a_resumable_log(tmp_path):
    output = tmp_path / "s.json"
    args = search_args(output, "--budget", "400", "--shots", "all", "--confirm-top", "0", "--search-space", "timesteps")
    log, stderr = tmp_path / "s.trials.jsonl", tmp_path / "stderr.txt"
    with open(stderr, "w") as err_file:  # a file, not a pipe: a full pipe would block the search's logging
        # Ctrl-C as in a terminal: a job started in the background of a script inherits SIGINT ignored
        process = subprocess.Popen(["fairseq-tp-search", *args],
                                   env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"},
                                   stdout=subprocess.DEVNULL, stderr=err_file, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 120
        while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
            time.sleep(0.05)
        assert len(log.read_text().splitlines()) >= 3, stderr.read_text()[-3000:]
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:  # where it is stuck: faulthandler's traceback on SIGABRT
            process.send_signal(signal.SIGABRT)
            process.wait(timeout=30)
            raise AssertionError("no exit 120 s after SIGINT:\n" + stderr.read_text()[-6000:]) from None
    err = stderr.read_text()
    assert process.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("fairseq-tp-search: error: interrupted; finished evaluations are in the "
                                            "trial log (continue with --resume)")
    _, trials = read_trial_log(str(log), 50)
    search_main([*args[:-8], "--budget", str(len(trials) + 1), "--shots", "all", "--confirm-top", "0",
                 "--search-space", "timesteps", "--resume"])
    assert json.loads(output.read_text())["evaluations"] == len(trials) + 1


@pytest.mark.fixture_dir("rdm-toy")
@pytest.mark.parametrize("value", [0, -5, "abc", 10 ** 12])
def test_a_checkpoint_with_a_bad_number_of_timesteps_gets_one_line_under_both_commands(value, tmp_path):
    import argparse
    import torch
    torch.serialization.add_safe_globals([argparse.Namespace])
    state = torch.load(RDM / "absorbing.pt", weights_only=True)
    state["cfg"]["model"].num_diffusion_timesteps = value
    state["args"] = None
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    expected = f"--num-diffusion-timesteps must be an integer in [1, 100,000], got {value!r}"
    line = refused(*search_args(tmp_path / "s.json", "--budget", "2", checkpoint=broken))
    assert line == f"fairseq-tp-search: error: {expected}"
    out = run_cli(["fairseq-generate", str(RDM / "data-bin"), "--user-dir", PLUGIN_DIR, "--task",
                   "diffusion_translation", "--path", str(broken), "--gen-subset", "test", "--cpu"])
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"fairseq-tp: error: {expected}"
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "s.trials.jsonl").exists()


@pytest.mark.fixture_dir("rdm-toy")
def test_a_schedule_that_is_not_a_regular_file_and_a_missing_user_dir_are_refused(tmp_path):
    fifo = tmp_path / "schedule.fifo"
    os.mkfifo(fifo)
    out = run_cli(["fairseq-generate", str(RDM / "data-bin"), "--user-dir", PLUGIN_DIR, "--task",
                   "diffusion_translation", "--path", str(RDM / "absorbing.pt"), "--gen-subset", "test", "--cpu",
                   "--tp-schedule", str(fifo)])  # would block reading without the check
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1] == (f"fairseq-tp: error: --tp-schedule: schedule file {fifo} is not a "
                                                   f"regular file")
    line = refused(*search_args(tmp_path / "s.json")[:1], "--user-dir", "/nonexistent/fairseq_tp",
                   *search_args(tmp_path / "s.json")[3:])
    assert line == "fairseq-tp-search: error: --user-dir /nonexistent/fairseq_tp: no such directory"


@pytest.mark.fixture_dir("rdm-toy")
def test_a_sentence_longer_than_the_model_positions_is_refused_or_skipped_before_decoding(tmp_path):
    from conftest import fairseq_main
    raw = tmp_path / "raw"
    raw.mkdir()
    for side in ("src", "tgt"):
        lines = (RDM / "raw" / f"valid.{side}").read_text().splitlines()[:30]
        words = lines[0].split()
        lines[7] = " ".join(words[i % len(words)] for i in range(1100))  # 1,100 tokens, past 1,024 positions
        (raw / f"valid.{side}").write_text("\n".join(lines) + "\n")
    fairseq_main("preprocess", ["--source-lang", "src", "--target-lang", "tgt", "--validpref", str(raw / "valid"),
                                "--srcdict", str(RDM / "data-bin" / "dict.src.txt"),
                                "--tgtdict", str(RDM / "data-bin" / "dict.tgt.txt"),
                                "--destdir", str(tmp_path / "bin"), "--workers", "1"])
    args = search_args(tmp_path / "s.json", "--budget", "3", "--shots", "all", "--confirm-top", "0")
    args[0] = str(tmp_path / "bin")
    line = refused(*args)
    assert line == ("fairseq-tp-search: error: sentence 7 of 'valid' has 1102 source tokens, more than the model's "
                    "1024 positions (--skip-invalid-size-inputs-valid-test leaves such sentences out)")
    assert not (tmp_path / "s.trials.jsonl").exists()
    search_main([*args, "--skip-invalid-size-inputs-valid-test"])
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["shot_ids"] == [i for i in range(30) if i != 7]
    generate = ["fairseq-generate", str(tmp_path / "bin"), "--user-dir", PLUGIN_DIR, "--task",
                "diffusion_translation", "--path", str(RDM / "absorbing.pt"), "--gen-subset", "valid", "--cpu"]
    out = run_cli(generate)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "fairseq-tp: error: sentence 7 has 1102 source and 1102 target tokens, more than the model's positions "
        "(1024, 1024) (--skip-invalid-size-inputs-valid-test leaves such sentences out)")
    skipped = run_cli([*generate, "--skip-invalid-size-inputs-valid-test"])
    assert skipped.returncode == 0 and "S-7\t" not in skipped.stdout and "S-8\t" in skipped.stdout


def test_a_refused_command_prints_its_one_line_and_nothing_else(tmp_path):
    out = run_cli(["fairseq-tp-search", str(tmp_path / "no-such-dir"), "--path", "x.pt", "--steps", "4"])
    assert out.returncode == 1
    assert out.stderr == f"fairseq-tp-search: error: data directory {tmp_path / 'no-such-dir'} does not exist\n"
    help_run = run_cli(["fairseq-tp-search", "--help"])
    assert help_run.returncode == 0 and help_run.stderr == "" and "--confirm-top" in help_run.stdout


def test_a_search_without_steps_is_an_argparse_error(tmp_path, capsys):
    from fairseq_tp.fairseq_search.cli import parse
    with pytest.raises(SystemExit) as refused:
        parse([str(tmp_path), "--path", "x.pt"])
    assert refused.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "fairseq-tp-search: error: the following arguments are required: --steps"


from test_search_cli import transformer_checkpoint  # noqa: E402,F401 -- the fixture


def test_a_non_diffusion_checkpoint_gets_one_line_under_fairseq_generate(toy_data, transformer_checkpoint):
    out = run_cli(["fairseq-generate", str(toy_data / "bin"), "--user-dir", PLUGIN_DIR, "--task",
                   "diffusion_translation", "--path", str(transformer_checkpoint), "--gen-subset", "test", "--cpu"])
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "fairseq-tp: error: --path is not a diffusion model (architecture 'transformer'): --task "
        "diffusion_translation decodes diffusion_transformer checkpoints")


@pytest.mark.fixture_dir("rdm-toy")
def test_raw_text_that_is_not_utf8_gets_one_line_under_both_commands(tmp_path):
    data = tmp_path / "raw-data"
    data.mkdir()
    for name in ("dict.src.txt", "dict.tgt.txt"):
        (data / name).write_bytes((RDM / "data-bin" / name).read_bytes())
    for side in ("src", "tgt"):
        text = (RDM / "raw" / f"valid.{side}").read_bytes()
        (data / f"valid.src-tgt.{side}").write_bytes(text[:40] + b"\xff\xfe" + text[40:])
        (data / f"test.src-tgt.{side}").write_bytes(text[:40] + b"\xff\xfe" + text[40:])
    expected = f"subset 'valid' in {data} is not UTF-8 text (invalid start byte at byte 40)"
    args = search_args(tmp_path / "s.json", "--dataset-impl", "raw", "--budget", "2")
    args[0] = str(data)
    assert refused(*args) == f"fairseq-tp-search: error: {expected}"
    out = run_cli(["fairseq-generate", str(data), "--user-dir", PLUGIN_DIR, "--task", "diffusion_translation",
                   "--path", str(RDM / "absorbing.pt"), "--gen-subset", "valid", "--cpu", "--dataset-impl", "raw"])
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"fairseq-tp: error: {expected}"


@pytest.mark.fixture_dir("rdm-toy")
@pytest.mark.parametrize("where", ["trial log", "schedule file"])
def test_a_full_disk_ends_in_one_line_and_leaves_only_valid_files(where, tmp_path, monkeypatch):
    import errno
    import fairseq_tp.files
    import fairseq_tp.search.trial_log as trial_log

    def full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    output = tmp_path / "s.json"
    args = search_args(output, "--budget", "4", "--shots", "10", "--confirm-top", "0")
    if where == "trial log":  # the third trial's fsync fails
        calls = {"n": 0}
        real = os.fsync

        def fsync_until_full(fd):
            calls["n"] += 1
            return full() if calls["n"] == 3 else real(fd)

        monkeypatch.setattr(trial_log.os, "fsync", fsync_until_full)
        line = refused(*args)
        assert line == f"fairseq-tp-search: error: cannot write trial log {tmp_path / 's.trials.jsonl'}: " \
                       f"No space left on device"
    else:
        real_replace = os.replace
        monkeypatch.setattr(fairseq_tp.files.os, "replace",
                            lambda src, dst: full() if str(dst) == str(output) else real_replace(src, dst))
        line = refused(*args)
        assert line == f"fairseq-tp-search: error: --output: cannot write {output}: No space left on device"
    monkeypatch.undo()
    assert not output.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
    _, trials = read_trial_log(str(tmp_path / "s.trials.jsonl"), 50)  # valid; a resume finishes the search
    search_main([*args, "--resume"])
    assert json.loads(output.read_text())["evaluations"] == 4
