#!/usr/bin/env python3
"""Decoding speed of RDM's own generator vs fairseq_tp, on the same RDM checkpoints.

For every checkpoint x decoding setting of the rdm-toy fixture, this runs

  RDM:  python launch.py <RDM>/fairseq/fairseq_cli/generate.py data-bin \
            --user-dir <RDM>/fairseq/diffusion_mt --task diffusion_translation \
            --path K.pt --gen-subset test --cpu --seed 1 --batch-size 50 <RDM flags>
  ours: python launch.py <venv>/fairseq_cli/generate.py data-bin --user-dir <repo>/fairseq_tp \
            --task diffusion_translation --path K.pt --gen-subset test --cpu --seed 1 --batch-size 50 <same flags>

as subprocesses (launch.py runs both scripts the same way: see its docstring), alternating which goes
first on each repeat, parses fairseq's
"Translated N sentences (...) in Xs (Y sentences/s, ...)" and "BLEU4 = ..." lines,
and prints a Markdown table of medians. RDM's code is not part of this repository:
pass the path of your own checkout with --rdm-dir.

fairseq's "sentences/s" is sentences / the time spent inside task.inference_step
(the generation step only: no process start, model or data loading, or scoring).
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from fairseq_tp.fairseq_search.timing import machine_facts

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LAUNCH = HERE / "launch.py"
COMMON = "--task diffusion_translation --gen-subset test --cpu --seed 1 --batch-size 50"
TIMING_NOTE = (
    "fairseq's sentences/s = sentences / time inside task.inference_step, i.e. the "
    "generation step only (excludes process start, model/data loading and BLEU scoring)."
)
TRANSLATED_RE = re.compile(
    r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s "
    r"\(([\d.]+|inf) sentences/s, ([\d.]+|inf) tokens/s\)"
)
BLEU_RE = re.compile(r"BLEU4 = ([\d.]+)")
NOISY_SPREAD = 0.15  # (max - min) / median above this on either side flags a row noisy


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rdm-dir", required=True,
                   help="root of an RDM (HKUNLP reparam-discrete-diffusion) checkout")
    p.add_argument("--fixture", default=str(REPO / ".." / "shared" / "fixtures" / "rdm-toy"),
                   help="fixture dir with data-bin/, *.pt, settings.txt (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1,
                   help="OMP_NUM_THREADS and MKL_NUM_THREADS for every subprocess")
    p.add_argument("--settings", nargs="+", default=None,
                   help="setting names from settings.txt (space- or comma-separated; default: all)")
    p.add_argument("--checkpoints", nargs="+", default=None,
                   help="checkpoint file names in the fixture (default: every *.pt)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    p.add_argument("--out", default=str(HERE / "results" / "rdm_speed.json"))
    return p.parse_args()


def find_rdm(rdm_dir):
    """Return (generate.py, diffusion_mt dir, discrete_diffusion dir or None), or exit."""
    root = Path(rdm_dir).expanduser().resolve()
    for fork in (root / "fairseq", root):
        gen = fork / "fairseq_cli" / "generate.py"
        if gen.is_file():
            break
    else:
        sys.exit(f"error: --rdm-dir {rdm_dir}: no fairseq/fairseq_cli/generate.py there "
                 "(expected the root of an HKUNLP reparam-discrete-diffusion checkout)")
    user_dir = fork / "diffusion_mt"
    if not user_dir.is_dir():
        sys.exit(f"error: --rdm-dir {rdm_dir}: no diffusion_mt plugin dir at {user_dir}")
    for dd in (root / "discrete_diffusion", fork.parent / "discrete_diffusion"):
        if (dd / "discrete_diffusions").is_dir():
            return gen, user_dir, dd
    return gen, user_dir, None  # then discrete_diffusions must be importable (pip install -e)


def read_settings(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, rdm_flags, _tp_flags = line.split("|")
        out[name.strip()] = rdm_flags.strip()
    return out


def run_once(cmd, env, cwd, timeout):
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f}s", "wall_s": round(time.time() - t0, 2)}
    wall = round(time.time() - t0, 2)
    log = proc.stdout + "\n" + proc.stderr
    m = TRANSLATED_RE.search(log)
    if proc.returncode != 0 or not m:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        msg = lines[-1].strip() if lines else f"exit status {proc.returncode}, no output"
        if proc.returncode == 0:
            msg = "no 'Translated ...' line; " + msg
        return {"error": msg[:500], "rc": proc.returncode, "wall_s": wall}
    b = BLEU_RE.search(proc.stdout)
    hyps = {}
    for ln in proc.stdout.splitlines():
        if ln.startswith("H-"):
            parts = ln.split("\t")
            hyps[parts[0][2:]] = parts[2] if len(parts) > 2 else ""
    return {
        "sentences": int(m.group(1).replace(",", "")),
        "tokens": int(m.group(2).replace(",", "")),
        "gen_s": float(m.group(3)),
        "sent_per_s": float(m.group(4)),
        "tok_per_s": float(m.group(5)),
        "bleu4": float(b.group(1)) if b else None,
        "wall_s": wall,
        "_hyps": hyps,
    }


def summarize(runs):
    ok = [r for r in runs if "error" not in r]
    s = {"runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs]}
    if not ok:
        s["error"] = runs[0]["error"] if runs else "not run"
        return s
    sps = [r["sent_per_s"] for r in ok]
    med = statistics.median(sps)
    s.update({
        "sent_per_s_median": med,
        "sent_per_s_min": min(sps),
        "sent_per_s_max": max(sps),
        "spread": (max(sps) - min(sps)) / med if med else None,
        "bleu4": [r["bleu4"] for r in ok],
        "wall_s_median": statistics.median(r["wall_s"] for r in ok),
    })
    if len(ok) < len(runs):
        s["error"] = next(r["error"] for r in runs if "error" in r) + f" ({len(runs) - len(ok)} of {len(runs)} runs)"
    return s


def bleu_cell(s):
    if "bleu4" not in s:
        return "—"
    vals = sorted(set(v for v in s["bleu4"] if v is not None))
    return " / ".join(f"{v:.2f}" for v in vals) if vals else "?"


def version(pkg):
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def main():
    args = parse_args()
    gen, rdm_user_dir, dd_dir = find_rdm(args.rdm_dir)
    fixture = Path(args.fixture).resolve()
    if not (fixture / "settings.txt").is_file() or not (fixture / "data-bin").is_dir():
        sys.exit(f"error: --fixture {fixture}: needs settings.txt and data-bin/")
    settings = read_settings(fixture / "settings.txt")
    if args.settings:
        names = [n for item in args.settings for n in item.split(",") if n]
        unknown = [n for n in names if n not in settings]
        if unknown:
            sys.exit(f"error: unknown setting(s) {unknown}; known: {list(settings)}")
        settings = {n: settings[n] for n in names}
    ckpts = args.checkpoints or sorted(p.name for p in fixture.glob("*.pt"))
    try:
        import fairseq_cli.generate as stock_generate
    except ImportError:
        sys.exit("error: fairseq is not importable (activate the fairseq_tp venv)")
    fgen = stock_generate.__file__

    base_env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    rdm_env = dict(base_env)
    if dd_dir:  # RDM's discrete_diffusions package, used in place (not pip-installed)
        rdm_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(dd_dir), base_env.get("PYTHONPATH")]))
    rdm_tmpl = (f"{shlex.quote(sys.executable)} {shlex.quote(str(LAUNCH))} {shlex.quote(str(gen))} data-bin "
                f"--user-dir {shlex.quote(str(rdm_user_dir))} --path {{ckpt}} {COMMON} {{flags}}")
    ours_tmpl = (f"{shlex.quote(sys.executable)} {shlex.quote(str(LAUNCH))} {shlex.quote(fgen)} data-bin "
                 f"--user-dir {shlex.quote(str(REPO / 'fairseq_tp'))} --path {{ckpt}} {COMMON} {{flags}}")

    load_start = os.getloadavg()
    rows = []
    for ckpt in ckpts:
        for name, flags in settings.items():
            sides = {
                "rdm": (shlex.split(rdm_tmpl.format(ckpt=ckpt, flags=flags)), rdm_env),
                "ours": (shlex.split(ours_tmpl.format(ckpt=ckpt, flags=flags)), base_env),
            }
            runs = {"rdm": [], "ours": []}
            for r in range(args.repeats):
                order = ("rdm", "ours") if r % 2 == 0 else ("ours", "rdm")
                for side in order:
                    prev = runs[side]
                    if prev and "error" in prev[0] and not prev[0]["error"].startswith("timeout"):
                        continue  # a crash is deterministic; don't repeat it
                    cmd, env = sides[side]
                    res = run_once(cmd, env, fixture, args.timeout)
                    runs[side].append(res)
                    shown = res.get("error") or f"{res['sent_per_s']:.2f} sent/s, BLEU4 {res['bleu4']}"
                    print(f"[{ckpt} {name} #{r + 1} {side:4}] {shown}", file=sys.stderr, flush=True)
            row = {"checkpoint": ckpt, "setting": name, "flags": flags,
                   "rdm": summarize(runs["rdm"]), "ours": summarize(runs["ours"])}
            # Share of test sentences with the same hypothesis (first successful run of each).
            rh = next((x["_hyps"] for x in runs["rdm"] if "_hyps" in x), None)
            oh = next((x["_hyps"] for x in runs["ours"] if "_hyps" in x), None)
            if rh and oh:
                row["same_hypothesis_share"] = round(sum(oh.get(k) == v for k, v in rh.items()) / len(rh), 4)
            r_m, o_m = row["rdm"].get("sent_per_s_median"), row["ours"].get("sent_per_s_median")
            row["ratio_ours_over_rdm"] = round(o_m / r_m, 3) if r_m and o_m else None
            spreads = [row[s].get("spread") for s in ("rdm", "ours")]
            row["noisy"] = any(x is not None and x > NOISY_SPREAD for x in spreads)
            rows.append(row)
    load_end = os.getloadavg()

    def cell(s):
        if "sent_per_s_median" not in s:
            return "error: " + s.get("error", "?").replace("|", "\\|")
        c = f"{s['sent_per_s_median']:.1f} ({s['sent_per_s_min']:.1f}–{s['sent_per_s_max']:.1f})"
        return c + (" ⚠ " + s["error"].replace("|", "\\|") if "error" in s else "")

    print(f"\nDecoding speed, RDM's generator vs fairseq_tp — {args.repeats} repeats, "
          f"{args.threads} thread(s), batch 50, 200 test sentences, CPU: {machine_facts()['cpu']}")
    print(f"Note: {TIMING_NOTE} Cells: median (min–max) over repeats.\n")
    print("| checkpoint | setting | RDM sentences/s (median) | ours sentences/s (median) "
          "| ratio ours/RDM | RDM BLEU4 | our BLEU4 |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ratio = f"{row['ratio_ours_over_rdm']:.2f}" if row["ratio_ours_over_rdm"] else "—"
        if row["noisy"]:
            ratio += " (noisy)"
        print(f"| {row['checkpoint']} | {row['setting']} | {cell(row['rdm'])} | {cell(row['ours'])} "
              f"| {ratio} | {bleu_cell(row['rdm'])} | {bleu_cell(row['ours'])} |")
    noisy = [f"{r['checkpoint']}/{r['setting']}" for r in rows if r["noisy"]]
    print(f"\nLoad average (1/5/15 min) at start {load_start}, at end {load_end}.")
    print(f"Rows with a spread (max-min)/median > {NOISY_SPREAD:.0%} on either side: "
          + (", ".join(noisy) if noisy else "none"))

    rdm_commit = None
    try:
        top, head = subprocess.run(["git", "-C", args.rdm_dir, "rev-parse", "--show-toplevel", "HEAD"],
                                   capture_output=True, text=True, timeout=10).stdout.split()
        if Path(top).resolve() in (gen.parents[1], gen.parents[2]):  # RDM's repo, not an enclosing one
            rdm_commit = head
    except (ValueError, OSError, subprocess.SubprocessError):
        pass
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_model": machine_facts()["cpu"], "logical_cpus": os.cpu_count(),
                    "python": platform.python_version(), "torch": version("torch"),
                    "fairseq": version("fairseq-fixed") or version("fairseq")},
        "threads": args.threads,
        "repeats": args.repeats,
        "command": " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv),
        "timing_note": TIMING_NOTE,
        "rdm_dir": str(Path(args.rdm_dir).resolve()),
        "rdm_commit": rdm_commit,
        "rdm_command": rdm_tmpl + (f"  # PYTHONPATH={dd_dir}" if dd_dir else ""),
        "ours_command": ours_tmpl,
        "cwd": str(fixture),
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "rows": rows,
    }
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(f"Wrote {out}")


if __name__ == "__main__":
    main()
