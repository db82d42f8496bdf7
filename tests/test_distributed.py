"""fairseq-tp-search under torchrun: 2 CPU ranks (gloo, localhost) score exactly as one process."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from fairseq_tp.fairseq_search.cli import main as search_main

DETERMINISTIC = ["--argmax-decoding", "--decoding-strategy", "reparam-uncond-deterministic-cosine"]
TORCHRUN = shutil.which("torchrun")
pytestmark = pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not on PATH")


def base_args(toy_data, checkpoint, output, *extra):
    # 7 shots in batches of 2: four uneven batches, split 2 + 2 over two ranks
    return [str(toy_data / "bin"), "--path", str(checkpoint), "--cpu", "--no-progress-bar", "--steps", "3",
            "--shots", "7", "--batch-size", "2", "--budget", "12", "--schedules-per-batch", "4",
            "--output", str(output), "--process-group-timeout", "60", *extra]


def torchrun(args, env=None, **popen):
    command = [TORCHRUN, "--standalone", "--nproc_per_node", "2", "--no-python", "fairseq-tp-search", *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **popen)


def kill_every_process_of(marker: str):
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        os.kill(int(entry), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


def trials(path, kind=None):
    """(timesteps, rates, BLEU, replicates) of the search's trials, or of the confirmation lines (kind "confirm")."""
    records = [r for r in map(json.loads, path.read_text().splitlines()[1:]) if r.get("kind") == kind]
    return [(r["timesteps"], r.get("rates"), r["bleu"], r.get("replicates"), r.get("statistics")) for r in records]


# Both scorers and both decodings, in two runs: each pairing exercises a different reduction (BLEU
# statistics vs. replicate scores), and the two axes do not interact in the code that splits the work.
@pytest.mark.parametrize("bleu,decoding", [("sacrebleu", "stochastic"), ("tokenized", "deterministic")])
def test_two_ranks_score_exactly_as_one_process(bleu, decoding, toy_data, checkpoints, tmp_path):
    flags = ["--bleu", bleu, *(DETERMINISTIC if decoding == "deterministic" else [])]
    checkpoint = checkpoints["absorbing"]
    search_main(base_args(toy_data, checkpoint, tmp_path / "one.json", *flags))
    process = torchrun(base_args(toy_data, checkpoint, tmp_path / "two.json", *flags))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    one, two = trials(tmp_path / "one.trials.jsonl"), trials(tmp_path / "two.trials.jsonl")
    assert len(one) == 12 and two == one  # to the last digit, replicates included
    assert (decoding == "stochastic") == (one[0][3] is not None)
    # Confirmation (on by default) decoded over both ranks: the same per-sentence statistics as one process.
    confirmed = trials(tmp_path / "one.trials.jsonl", "confirm")
    assert len(confirmed) == 6 and trials(tmp_path / "two.trials.jsonl", "confirm") == confirmed
    assert json.loads((tmp_path / "two.json").read_text())["confirmation"]["candidates"] == \
        json.loads((tmp_path / "one.json").read_text())["confirmation"]["candidates"]
    assert sum(line.startswith("searched ") for line in out.splitlines()) == 1  # rank 0 alone reports


def test_a_killed_two_rank_search_resumes_to_the_uninterrupted_result(toy_data, checkpoints, tmp_path):
    checkpoint = checkpoints["absorbing"]
    longer = ("--budget", "60", *DETERMINISTIC)  # the last --budget wins
    search_main(base_args(toy_data, checkpoint, tmp_path / "whole.json", *longer))
    log = tmp_path / "cut.trials.jsonl"
    process = torchrun(base_args(toy_data, checkpoint, tmp_path / "cut.json", *longer))
    deadline = time.time() + 240
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 10):
        time.sleep(0.02)
    kill_every_process_of(str(tmp_path / "cut.json"))  # torchrun and its workers, which have sessions of their own
    process.communicate()
    finished = len(log.read_text().splitlines()) - 1
    assert 9 <= finished < 60 and not (tmp_path / "cut.json").exists()
    resumed = torchrun(base_args(toy_data, checkpoint, tmp_path / "cut.json", *longer, "--resume"))
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert trials(log) == trials(tmp_path / "whole.trials.jsonl")
    assert trials(log, "confirm") == trials(tmp_path / "whole.trials.jsonl", "confirm")


def test_a_failing_rank_ends_the_job_with_a_line_naming_it(toy_data, checkpoints, tmp_path):
    args = base_args(toy_data, checkpoints["absorbing"], tmp_path / "s.json", *DETERMINISTIC)
    args[args.index("--process-group-timeout") + 1] = "30"
    start = time.time()
    process = torchrun(args, env={"FAIRSEQ_TP_FAIL_ON_RANK": "1"})
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0 and time.time() - start < 90
    ours = [line for line in err.splitlines() if line.startswith("fairseq-tp-search: error:")]
    assert ours[-1] == ("fairseq-tp-search: error: rank 1 of 2: RuntimeError: failure injected by "
                        "FAIRSEQ_TP_FAIL_ON_RANK")
