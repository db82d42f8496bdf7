#!/usr/bin/env python3
"""fairseq_tp at two commits, side by side on the Bible probe (../shared/fixtures/bible-kjv-web): the test
set's decode at 4 and at 50 passes (fairseq's sentences/s: generation only) and a 20-shot fairseq-tp-search's
wall time, each the median of --repeats runs, the two versions alternating.

    python examples/rdm_speed/probe_speed.py --before 05a5874 [--repeats 3] [--threads 1]

The other version is checked out (git worktree) into a temporary folder and imported first (PYTHONPATH);
both run the same checkpoint, data and flags through launch.py (see there), one thread each by default.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fairseq_tp.fairseq_search.timing import machine_facts

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PROBE = REPO.parent / "shared" / "fixtures" / "bible-kjv-web"
DECODING = ["--argmax-decoding", "--decoding-strategy", "reparam-uncond-deterministic-cosine"]
SPEED = re.compile(r"Translated [\d,]+ sentences \([\d,]+ tokens\) in ([\d.]+)s \(([\d.]+) sentences/s")


def generate(plugin_root, steps, threads):
    import fairseq_cli.generate as stock
    command = [sys.executable, str(HERE / "launch.py"), stock.__file__, str(PROBE / "data-bin"), "--user-dir",
               str(plugin_root / "fairseq_tp"), "--task", "diffusion_translation", "--path",
               str(PROBE / "absorbing.pt"), "--gen-subset", "test", "--cpu", "--seed", "1", "--batch-size", "100",
               "--tp-schedule", f"uniform:{steps}", *DECODING]
    run = subprocess.run(command, capture_output=True, text=True, env=environment(plugin_root, threads), check=True)
    return float(SPEED.search(run.stderr + run.stdout).group(2))


def search(plugin_root, threads, work):
    command = [sys.executable, "-m", "fairseq_tp.fairseq_search.cli", str(PROBE / "data-bin"), "--path",
               str(PROBE / "absorbing.pt"), "--cpu", "--steps", "4", "--shots", "20", "--budget", "40", "--seed", "1",
               "--output", str(work / "schedule.json"), "--no-progress-bar", *DECODING]
    start = time.time()
    subprocess.run(command, capture_output=True, text=True, env=environment(plugin_root, threads), check=True)
    return time.time() - start


def environment(plugin_root, threads):
    return {**os.environ, "PYTHONPATH": str(plugin_root), "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the commit to compare the working tree with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(HERE / "results" / "probe_speed.json"))
    args = parser.parse_args()
    if not (PROBE / "absorbing.pt").is_file():
        sys.exit(f"error: needs the Bible probe fixture at {PROBE}")
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), args.before], check=True,
                       capture_output=True)
        try:
            versions = {"before": old, "after": REPO}
            runs = {name: {"4": [], "50": [], "search_s": []} for name in versions}
            for repeat in range(args.repeats):
                order = list(versions) if repeat % 2 == 0 else list(reversed(versions))
                for name in order:
                    root = versions[name]
                    for steps in ("4", "50"):
                        runs[name][steps].append(generate(root, steps, args.threads))
                    work = Path(tmp) / f"{name}-{repeat}"
                    work.mkdir()
                    runs[name]["search_s"].append(search(root, args.threads, work))
                    print(f"[{repeat + 1}/{args.repeats} {name}] " + ", ".join(
                        f"{k} {v[-1]:.1f}" for k, v in runs[name].items()), file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], capture_output=True)
    medians = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in runs.items()}
    print(f"\nBible probe, 1,000 test verses, batch 100, {args.threads} thread(s); medians of {args.repeats}")
    print("| version | 4 passes sentences/s | 50 passes sentences/s | 4 vs 50 | 20-shot search wall s |")
    print("|---|---|---|---|---|")
    for name, m in medians.items():
        print(f"| {name} ({args.before if name == 'before' else 'working tree'}) | {m['4']:.1f} | {m['50']:.1f} "
              f"| {m['4'] / m['50']:.1f}x | {m['search_s']:.1f} |")
    after, before = medians["after"], medians["before"]
    print(f"| after / before | {after['4'] / before['4']:.2f}x | {after['50'] / before['50']:.2f}x | | "
          f"{before['search_s'] / after['search_s']:.2f}x faster |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"before": args.before, "threads": args.threads, "runs": runs,
                                          "medians": medians, "machine": machine_facts(),
                                          "load_average": os.getloadavg()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
