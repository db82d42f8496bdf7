"""examples/bible/distill.py, the sequence-level distillation plumbing, without a Bible download: a tiny
autoregressive teacher (1 layer, a few updates) on 150 sentences of the RDM fixture's data distils in two
shards; a run killed after its first shard resumes, and both runs give the same files, byte for byte.
The oracle for the content is fairseq-generate run on the whole train set in one go."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import FIXTURES, PLUGIN_DIR, REPO, fairseq_main, run_cli

RDM = FIXTURES / "rdm-toy"
DISTILL = REPO / "examples" / "bible" / "distill.py"
pytestmark = pytest.mark.fixture_dir("rdm-toy")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    raw = root / "raw"
    raw.mkdir()
    for split, count in (("train", 150), ("valid", 20), ("test", 20)):
        for side in ("src", "tgt"):
            lines = (RDM / "raw" / f"{split}.{side}").read_text().splitlines()[:count]
            (raw / f"{split}.{side}").write_text("\n".join(lines) + "\n")
    fairseq_main("preprocess", [
        "--source-lang", "src", "--target-lang", "tgt", "--trainpref", str(raw / "train"), "--validpref",
        str(raw / "valid"), "--testpref", str(raw / "test"), "--srcdict", str(RDM / "data-bin" / "dict.src.txt"),
        "--tgtdict", str(RDM / "data-bin" / "dict.tgt.txt"), "--destdir", str(root / "bin"), "--workers", "1"])
    fairseq_main("train", [
        str(root / "bin"), "--user-dir", PLUGIN_DIR, "--task", "translation", "--arch", "transformer",
        "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
        "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2",
        "--decoder-attention-heads", "2", "--share-all-embeddings", "--optimizer", "adam", "--lr", "0.005",
        "--max-update", "12", "--max-tokens", "512", "--cpu", "--seed", "1", "--save-dir", str(root / "teacher"),
        "--no-epoch-checkpoints", "--no-progress-bar", "--disable-validation"])
    return root


def distill(data, out, *extra):
    return [sys.executable, str(DISTILL), str(data / "bin"), "--teacher", str(data / "teacher" / "checkpoint_last.pt"),
            "--out", str(out), "--shards", "2", "--max-tokens", "200", *extra]


@pytest.fixture(scope="module")
def whole(small_data):
    """An uninterrupted run."""
    out = small_data / "whole"
    run = run_cli(distill(small_data, out))
    assert run.returncode == 0, run.stderr
    return out


def test_a_killed_distillation_resumes_to_the_same_files(small_data, whole, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.Popen(distill(small_data, tmp_path / "killed"), env=env, stdout=subprocess.PIPE, text=True)
    first = tmp_path / "killed" / "shards" / "2.0.tsv"
    while not first.exists() and killed.poll() is None:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "bin").exists()
    resumed = run_cli(distill(small_data, tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr
    assert "shard 1/2: done before" in resumed.stdout

    report = json.loads((whole / "distill.json").read_text())
    assert report["files"] == json.loads((tmp_path / "killed" / "distill.json").read_text())["files"]
    for name in ("train.src", "train.tgt"):
        assert (whole / "text" / name).read_bytes() == (tmp_path / "killed" / "text" / name).read_bytes()
    # The source side, valid and test are the original binaries; the train targets are new.
    original = small_data / "bin"
    for name, digest in report["files"].items():
        same = (original / name).read_bytes() == (whole / "bin" / name).read_bytes()
        assert same == (name not in ("train.src-tgt.tgt.bin", "train.src-tgt.tgt.idx")), name
    assert report["sentences"] == 150


def test_distilled_targets_are_the_teachers_beam_outputs(small_data, whole, tmp_path):
    """Against fairseq-generate's beam 5 over the whole train set in one process (no shards)."""
    fairseq_main("generate", [
        str(small_data / "bin"), "--user-dir", PLUGIN_DIR, "--task", "translation", "--path",
        str(small_data / "teacher" / "checkpoint_last.pt"), "--gen-subset", "train", "--beam", "5", "--cpu",
        "--max-tokens", "200", "--required-batch-size-multiple", "1", "--results-path", str(tmp_path / "oracle")])
    hypotheses = {}
    for line in (tmp_path / "oracle" / "generate-train.txt").read_text().splitlines():
        if line.startswith("H-"):
            head, _, text = (line.split("\t") + [""])[:3]
            hypotheses[int(head[2:])] = text
    distilled = (whole / "text" / "train.tgt").read_text().splitlines()
    assert distilled == [hypotheses[i] for i in range(150)]
    sources = (whole / "text" / "train.src").read_text().splitlines()
    assert sources == (RDM / "raw" / "train.src").read_text().splitlines()[:150]


def test_changed_settings_in_the_same_folder_are_refused(small_data, whole):
    before = (whole / "distill.json").read_bytes()
    again = run_cli(distill(small_data, whole, "--beam", "4"))
    assert again.returncode == 1
    assert again.stderr.strip() == (f"[distill] error: {whole / 'shards'} was made with other beam: "
                                    f"delete it or use another --out")
    assert (whole / "distill.json").read_bytes() == before
