#!/usr/bin/env python3
"""Sequence-level knowledge distillation (Kim & Rush 2016) of a fairseq data-bin: an autoregressive
teacher's beam outputs on the training sources become the training targets.  Valid and test are copied
unchanged, so models trained on the result are still scored against the original references.

    python examples/bible/distill.py BIN --teacher CKPT --out OUT [--shards 8] [--beam 5] [--max-tokens 6000]

Resumable and deterministic: the train sources are decoded in --shards pieces by fairseq-generate (sharded
with --distributed-world-size/--distributed-rank: fairseq 0.12's generate does not read --num-shards/
--shard-id), each finished shard written atomically to OUT/shards/; a killed run starts again at the first
unfinished shard, and any run gives the same files.
Results: OUT/text/train.{SRC,TGT} (the teacher's BPE text), OUT/bin (fairseq-preprocess with BIN's
dictionaries, valid/test copied from BIN), OUT/distill.json (teacher sha256, options, counts, file hashes).
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

from fairseq_tp.fairseq_search.loading import sha256_of
from fairseq_tp.files import atomic_write_text

PLUGIN = os.path.dirname(os.path.abspath(__import__("fairseq_tp").__file__))


def cli(name: str) -> str:
    """A fairseq command from this interpreter's environment (a venv that is not activated), else PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else name


def say(message: str) -> None:
    print(f"[distill] {message}", flush=True)


def die(message: str) -> None:
    print(f"[distill] error: {message}", file=sys.stderr)
    sys.exit(1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="fairseq data-bin with train/valid/test of one language pair")
    p.add_argument("--teacher", required=True, help="autoregressive fairseq checkpoint (--task translation)")
    p.add_argument("--out", required=True, help="output folder (resumes what is there)")
    p.add_argument("--shards", type=int, default=8, help="pieces the train set is decoded in (default 8)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=6000, help="fairseq-generate batch size in tokens")
    args = p.parse_args(argv)
    if args.shards < 1 or args.beam < 1 or args.max_tokens < 1:
        die("--shards, --beam and --max-tokens must be positive")
    if not os.path.isfile(args.teacher):
        die(f"--teacher {args.teacher}: no such file")
    return args


def language_pair(data: str):
    """(source, target) from BIN's train.SRC-TGT.SRC.idx; one pair only."""
    pairs = {os.path.basename(p).split(".")[1] for p in glob.glob(os.path.join(data, "train.*-*.*.idx"))}
    if len(pairs) != 1:
        die(f"{data}: expected the train split of one language pair (train.SRC-TGT.*.idx), found {sorted(pairs)}")
    source, target = pairs.pop().split("-")
    for side in (source, target):
        if not os.path.isfile(os.path.join(data, f"dict.{side}.txt")):
            die(f"{data}: no dict.{side}.txt")
    return source, target


def train_size(data: str, source: str, target: str) -> int:
    from fairseq.data.indexed_dataset import MMapIndexedDataset
    return len(MMapIndexedDataset(os.path.join(data, f"train.{source}-{target}.{source}")))


def decode_shard(args, shard: int, path: str) -> int:
    """fairseq-generate on one shard of the train set; writes ``id<TAB>source<TAB>reference<TAB>hypothesis``
    lines sorted by id to ``path`` (atomically) and returns how many."""
    command = [cli("fairseq-generate"), args.data, "--user-dir", PLUGIN, "--task", "translation", "--path", args.teacher,
               "--gen-subset", "train", "--beam", str(args.beam), "--max-tokens", str(args.max_tokens), "--cpu",
               # fairseq 0.12's batching by a multiple of 8 loses sentences (6 of 150 in the test): 1 keeps all
               "--required-batch-size-multiple", "1",
               "--seed", "1", "--num-workers", "0", "--distributed-world-size", str(args.shards),
               "--distributed-rank", str(shard)]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        tail = "\n".join(run.stderr.strip().splitlines()[-5:])
        die(f"fairseq-generate failed on shard {shard}:\n{tail}")
    fields = {}
    for line in run.stdout.splitlines():
        kind, _, rest = line.partition("-")
        if kind not in ("S", "T", "H") or "\t" not in rest:
            continue
        parts = rest.split("\t")
        text = parts[2] if kind == "H" else parts[1]
        fields.setdefault(int(parts[0]), {})[kind] = text
    rows = []
    for sentence in sorted(fields):
        entry = fields[sentence]
        if "S" not in entry or "H" not in entry:
            die(f"shard {shard}: sentence {sentence} has no source or hypothesis line in fairseq-generate's output")
        rows.append(f"{sentence}\t{entry['S']}\t{entry.get('T', '')}\t{entry['H']}\n")
    atomic_write_text(path, "".join(rows))
    return len(rows)


def read_shards(paths, expected: int):
    """{id: (source, reference, hypothesis)} over every shard, each id once, ids 0 .. expected - 1."""
    rows = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                sentence, source, reference, hypothesis = line.rstrip("\n").split("\t")
                if int(sentence) in rows:
                    die(f"{path}: sentence {sentence} is in two shards")
                rows[int(sentence)] = (source, reference, hypothesis)
    if sorted(rows) != list(range(expected)):
        die(f"the shards hold {len(rows)} of the {expected} train sentences: delete {os.path.dirname(paths[0])} "
            f"and run again")
    return rows


def binarise(args, text_prefix: str, source: str, target: str) -> str:
    """fairseq-preprocess of the distilled train text with BIN's dictionaries, valid/test copied; OUT/bin."""
    final, staging = os.path.join(args.out, "bin"), os.path.join(args.out, "bin.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    command = [cli("fairseq-preprocess"), "--source-lang", source, "--target-lang", target, "--trainpref", text_prefix,
               "--srcdict", os.path.join(args.data, f"dict.{source}.txt"),
               "--tgtdict", os.path.join(args.data, f"dict.{target}.txt"), "--destdir", staging, "--workers", "1"]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        die("fairseq-preprocess failed:\n" + "\n".join(run.stderr.strip().splitlines()[-5:]))
    # Its log names paths and times: kept beside the binaries, not among them.
    os.replace(os.path.join(staging, "preprocess.log"), os.path.join(args.out, "preprocess.log"))
    for path in glob.glob(os.path.join(args.data, "valid.*")) + glob.glob(os.path.join(args.data, "test.*")):
        shutil.copyfile(path, os.path.join(staging, os.path.basename(path)))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    return final


def main(argv=None):
    args = parse_args(argv)
    source, target = language_pair(args.data)
    expected = train_size(args.data, source, target)
    shard_dir = os.path.join(args.out, "shards")
    os.makedirs(shard_dir, exist_ok=True)
    teacher_sha = sha256_of(args.teacher)
    settings = {"teacher": os.path.abspath(args.teacher), "teacher_sha256": teacher_sha, "beam": args.beam,
                "shards": args.shards, "max_tokens": args.max_tokens, "data": os.path.abspath(args.data)}
    recorded = os.path.join(shard_dir, "settings.json")
    if os.path.exists(recorded):
        before = json.load(open(recorded))
        changed = [k for k in ("teacher_sha256", "beam", "shards", "max_tokens") if before.get(k) != settings[k]]
        if changed:
            die(f"{shard_dir} was made with other {', '.join(changed)}: delete it or use another --out")
    else:
        atomic_write_text(recorded, json.dumps(settings, indent=1) + "\n")

    say(f"{expected} train sentences of {args.data}, teacher {args.teacher} (sha256 {teacher_sha[:12]}), "
        f"beam {args.beam}, {args.shards} shards -> {args.out}")
    paths = [os.path.join(shard_dir, f"{args.shards}.{shard}.tsv") for shard in range(args.shards)]
    for shard, path in enumerate(paths):
        if os.path.exists(path):
            say(f"shard {shard + 1}/{args.shards}: done before")
            continue
        start = time.time()
        count = decode_shard(args, shard, path)
        say(f"shard {shard + 1}/{args.shards}: {count} sentences in {time.time() - start:.0f} s")

    rows = read_shards(paths, expected)
    empty = [i for i, (_, _, hypothesis) in rows.items() if not hypothesis.strip()]
    text_dir = os.path.join(args.out, "text")
    os.makedirs(text_dir, exist_ok=True)
    prefix = os.path.join(text_dir, "train")
    atomic_write_text(f"{prefix}.{source}", "".join(rows[i][0] + "\n" for i in range(expected)))
    # An empty beam output would leave a target of <eos> alone: such a sentence keeps its reference.
    atomic_write_text(f"{prefix}.{target}", "".join((rows[i][1] if i in empty else rows[i][2]) + "\n"
                                                    for i in range(expected)))
    binaries = binarise(args, prefix, source, target)
    unchanged = sum(reference == hypothesis for _, reference, hypothesis in rows.values())
    report = dict(settings, sentences=expected, kept_reference_for_empty_output=len(empty),
                  same_as_reference=unchanged,
                  files={name: sha256_of(os.path.join(binaries, name)) for name in sorted(os.listdir(binaries))})
    atomic_write_text(os.path.join(args.out, "distill.json"), json.dumps(report, indent=1) + "\n")
    say(f"done: {binaries} ({expected} pairs; {unchanged} targets equal the reference, {len(empty)} empty outputs "
        f"kept the reference); train target sha256 {report['files'][f'train.{source}-{target}.{target}.bin'][:12]}")


if __name__ == "__main__":
    main()
