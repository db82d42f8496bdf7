"""examples/bible/benchmark.py end to end on the Bible fixture checkpoint, its test and valid sets cut short."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import sacrebleu
from sacremoses import MosesDetokenizer

from conftest import FIXTURES, REPO, fairseq_main

SCRIPT = REPO / "examples" / "bible" / "benchmark.py"
REPARAM = ["--argmax-decoding", "--decoding-strategy", "reparam-uncond-deterministic-cosine"]
pytestmark = pytest.mark.fixture_dir("bible-kjv-web")


def first_sentences(source_bin, target_bin, split, count):
    """Binarise the first ``count`` pairs of ``split`` again, as fairseq-preprocess lays them out."""
    from fairseq.data import Dictionary, data_utils, indexed_dataset
    dictionary = Dictionary.load(str(source_bin / "dict.src.txt"))
    texts = {}
    for side in ("src", "tgt"):
        prefix = f"{split}.src-tgt.{side}"
        data = data_utils.load_indexed_dataset(str(source_bin / prefix), dictionary)
        builder = indexed_dataset.make_builder(str(target_bin / f"{prefix}.bin"), impl="mmap",
                                               vocab_size=len(dictionary))
        for i in range(count):
            builder.add_item(data[i])
        builder.finalize(str(target_bin / f"{prefix}.idx"))
        # plain text as prepare.sh's *.ref.* files hold it: detokenised and cased (here: capitalised only)
        detok = MosesDetokenizer("en")
        lines = [detok.detokenize(dictionary.string(data[i], "subword_nmt").split()) for i in range(count)]
        texts[side] = [line[:1].upper() + line[1:] for line in lines]
    return texts


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("bible")
    fixture = FIXTURES / "bible-kjv-web"
    bin_dir, text = root / "kjv-web" / "bin", root / "kjv-web" / "text"
    bin_dir.mkdir(parents=True)
    text.mkdir()
    for name in ("dict.src.txt", "dict.tgt.txt"):
        shutil.copy(fixture / "data-bin" / name, bin_dir / name)
    refs = first_sentences(fixture / "data-bin", bin_dir, "test", 30)
    first_sentences(fixture / "data-bin", bin_dir, "valid", 40)
    for side in ("src", "tgt"):
        (text / f"test.ref.{side}").write_text("".join(line + "\n" for line in refs[side]))
    ckpt = root / "ckpt" / "kjv-web-absorbing"
    ckpt.mkdir(parents=True)
    os.symlink(fixture / "absorbing.pt", ckpt / "checkpoint_last.pt")
    return root, refs


def benchmark(root, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), "--work", str(root), *args], capture_output=True, text=True,
                          env=env)


def generate_bleu(root, refs, capsys, schedule):
    """sacreBLEU of fairseq-generate's own H- lines under ``--tp-schedule schedule``, scored as README.md says."""
    capsys.readouterr()
    fairseq_main("generate", [str(root / "kjv-web" / "bin"), "--user-dir", str(REPO / "fairseq_tp"), "--task",
                              "diffusion_translation", "--path", str(root / "ckpt" / "kjv-web-absorbing" /
                                                                     "checkpoint_last.pt"),
                              "--gen-subset", "test", "--batch-size", "100", "--cpu", "--tp-schedule", str(schedule),
                              "--remove-bpe", *REPARAM])
    hyps = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("H-"):
            head, _, text = line.split("\t")
            hyps[int(head[2:])] = MosesDetokenizer("en").detokenize(text.split())
    return round(sacrebleu.corpus_bleu([hyps[i] for i in range(len(refs["tgt"]))], [refs["tgt"]],
                                       lowercase=True).score, 2)


def test_rows_match_independent_decoding_and_scoring(work, tmp_path, capsys):
    root, refs = work
    results = tmp_path / "kjv-web.json"
    done = benchmark(root, "--models", "copy", "absorbing", "--seeds", "1", "--budget", "3", "--repeats", "1",
                     "--results", str(results))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(results.read_text())
    copy = report["models"]["copy"]["rows"]
    assert copy[0]["bleu"] == round(sacrebleu.corpus_bleu(refs["src"], [refs["tgt"]], lowercase=True).score, 2)

    rows = {r["row"]: r for r in report["models"]["absorbing"]["rows"]}
    assert list(rows) == ["vanilla-50", "vanilla-4", "tp-4-20shot", "random-4-20shot", "paper-4-20shot", "tp-4-full"]
    assert rows["vanilla-50"]["steps"] == 50 and rows["vanilla-50"]["speedup"] == 1.0
    assert rows["vanilla-4"]["timesteps"] == [[49, 36, 23, 11]]
    searches = root / "searches" / "kjv-web"
    for name in ("tp-4-20shot", "random-4-20shot", "paper-4-20shot", "tp-4-full"):
        found = json.loads((searches / f"absorbing.{name}{'.seed1' if '20shot' in name else ''}.json").read_text())
        # the schedule the search wrote, rates included, is the one decoded
        assert (rows[name]["timesteps"], rows[name]["rates"]) == ([found["timesteps"]], [found.get("rates")])
        assert rows[name]["search_s"] == pytest.approx(rows[name]["decoding_s"] + rows[name]["optimiser_s"], abs=0.5)
        paired = rows[name]["minus_vanilla-4"]
        assert paired["mean"] == round(rows[name]["bleu"] - rows["vanilla-4"]["bleu"], 2) and paired["pairs"] == 1
    # fairseq-generate itself, on uniform-4 and on a schedule file the search wrote
    assert rows["vanilla-4"]["bleu"] == generate_bleu(root, refs, capsys, "uniform:4")
    tp_search = searches / "absorbing.tp-4-20shot.seed1.json"
    assert rows["tp-4-20shot"]["bleu"] == generate_bleu(root, refs, capsys, tp_search)
    # where a search wrote rates (reparam routing), they are decoded too: give the reused file some
    with_rates = json.loads(tp_search.read_text()) | {"rates": [0.8, 0.45, 0.1, 0.0]}
    tp_search.write_text(json.dumps(with_rates))

    # a later run of one model: reuses the finished searches (same checkpoint and settings), searches again for
    # other settings (seed 2), and keeps the other models' rows
    rerun = benchmark(root, "--models", "absorbing", "--seeds", "1", "2", "--budget", "3", "--repeats", "1",
                      "--skip-full-search", "--results", str(results))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.count("[bible] reusing ") == 3 and (searches / "absorbing.tp-4-20shot.seed2.json").is_file()
    merged = json.loads(results.read_text())
    assert merged["models"]["copy"] == report["models"]["copy"]
    rerun_rows = {r["row"]: r for r in merged["models"]["absorbing"]["rows"]}
    assert all(rerun_rows[k]["timesteps"][0] == rows[k]["timesteps"][0] for k in rerun_rows)
    assert rerun_rows["tp-4-20shot"]["rates"][0] == with_rates["rates"]
    assert rerun_rows["tp-4-20shot"]["bleus"][0] == generate_bleu(root, refs, capsys, tp_search)
    assert "| absorbing | tp-4-full |" not in rerun.stdout and "| copy | copy-source |" in rerun.stdout

    # the steps sweep is stored beside the rows, which it leaves alone
    swept = benchmark(root, "--models", "absorbing", "--sweep", "2", "--budget", "3", "--repeats", "1",
                      "--results", str(results))
    assert swept.returncode == 0, swept.stderr[-3000:]
    assert json.loads(results.read_text())["models"] == merged["models"]
    (row,) = json.loads(results.read_text())["sweeps"]["absorbing"]["rows"]
    found = json.loads((searches / "absorbing.sweep-2.json").read_text())
    assert row["steps"] == 2 and row["searched_timesteps"] == found["timesteps"] and len(found["timesteps"]) == 2
    assert row["searched_rates"] == found.get("rates")
    assert "| 2 | " in swept.stdout


def test_missing_checkpoint_is_one_line(work, tmp_path):
    root, _ = work
    done = benchmark(root, "--models", "continuous", "--results", str(tmp_path / "r.json"))
    assert done.returncode == 1
    assert done.stderr.strip() == (f"benchmark.py: error: no checkpoint {root}/ckpt/kjv-web-continuous/"
                                   f"checkpoint_last.pt; run examples/bible/train.sh first")
    assert not (tmp_path / "r.json").exists()


def test_sweep_share_only_against_the_same_checkpoint():
    sys.path.insert(0, str(REPO / "examples" / "bible"))
    from benchmark import markdown

    def entry(updates, rows):
        return {"date": "d", "machine": "m", "threads": 1, "load_average": [0.0], "repeats": 1, "command": "c",
                "decoding": "x", "checkpoint_updates": updates, "rows": rows}
    sweep = {"checkpoint_updates": 4028, "rows": [{"steps": 6, "uniform_bleu": 24.87, "searched_bleu": 25.43,
                                                   "searched_timesteps": [49, 40, 30, 20, 10, 0]}]}
    full_row = {"row": "vanilla-50", "steps": 50, "bleu": 27.5}
    same = markdown({"task": "t", "scorer": "s", "models": {"absorbing": entry(4028, [full_row])},
                     "sweeps": {"absorbing": sweep}})
    assert "steps against the all-steps BLEU (27.5)" in same and "| 6 | 24.87 | 90.4% | 25.43 | 92.5% |" in same
    # retrained to 20 updates after the sweep: its 0.14 must not become a 17,764% share
    retrained = markdown({"task": "t", "scorer": "s", "models": {"absorbing": entry(20, [full_row | {"bleu": 0.14}])},
                          "sweeps": {"absorbing": sweep}})
    assert "another checkpoint (20 updates; the sweep's has 4028)" in retrained
    assert "| 6 | 24.87 | — | 25.43 | — |" in retrained
