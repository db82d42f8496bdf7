"""Measures fairseq-tp-search on the fixture checkpoints (../shared/fixtures): what the search costs and
whether it finds schedules that beat uniform steps on held-out sentences.  A script, not a test: every
part prints a table (medians, means ± sd, side by side in one run) with the machine, threads and load,
and writes results/PART.json.

    python examples/search_benchmark/benchmark.py optimiser      # seconds per proposed schedule, 40 observations
    python examples/search_benchmark/benchmark.py search-phase   # 40-evaluation 20-shot search, absorbing, R = 1
    python examples/search_benchmark/benchmark.py strategies     # botorch vs paper vs random, equal budget
    python examples/search_benchmark/benchmark.py paired         # searched vs uniform-4 on test, R = 1 vs R = 4
    python examples/search_benchmark/benchmark.py distributed    # a full-valid search, 1 process vs torchrun 2
    python examples/search_benchmark/benchmark.py holds --cells probe-4-rates ...  # does the gain hold on test?
    python examples/search_benchmark/benchmark.py holds --report   # the table of every finished cell
    python examples/search_benchmark/benchmark.py confirm-cost   # search phase with and without confirmation
    python examples/search_benchmark/benchmark.py ranking        # which pick holds on valid (candidate ranking)

Run it alone on the machine with OMP_NUM_THREADS fixed (it sets torch's threads from --threads).
"""
import argparse
import datetime
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from fairseq_tp.fairseq_search.timing import machine_summary as machine

HERE = Path(__file__).resolve().parent
FIXTURES = Path(os.environ.get("FAIRSEQ_TP_FIXTURES", HERE.parents[1].parent / "shared" / "fixtures"))
DEFAULT = ["--decoding-strategy", "default", "--argmax-decoding"]
DETERMINISTIC = ["--argmax-decoding", "--decoding-strategy", "reparam-uncond-deterministic-cosine"]
# name: (data-bin, checkpoint, extra flags)
MODELS = {
    "rdm-absorbing": (FIXTURES / "rdm-toy" / "data-bin", FIXTURES / "rdm-toy" / "absorbing.pt", []),
    "rdm-multinomial": (FIXTURES / "rdm-toy" / "data-bin", FIXTURES / "rdm-toy" / "multinomial.pt", []),
    "bible-absorbing": (FIXTURES / "bible-kjv-web" / "data-bin", FIXTURES / "bible-kjv-web" / "absorbing.pt",
                        ["--remove-bpe"]),
}


def header(args) -> dict:
    return {"date": datetime.datetime.now().isoformat(timespec="minutes"), "machine": machine(),
            "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
            "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])}


def search(name, work, *flags):
    """One fairseq-tp-search through the API; returns its report (the search phase is result.elapsed_s)."""
    from fairseq_tp.fairseq_search import tune
    from fairseq_tp.fairseq_search.cli import parse
    data, ckpt, extra = MODELS[name]
    output = Path(work) / f"s{time.perf_counter_ns()}.json"
    cfg, options = parse([str(data), "--path", str(ckpt), "--cpu", "--no-progress-bar", "--batch-size", "100",
                          "--steps", "4", "--output", str(output), *extra, *flags])
    return tune(cfg, options)


def test_set(name, flags, scorer=None):
    """The model's test subset, decoded with the model loaded once under any schedule and noise seed."""
    from fairseq_tp.fairseq_search import SubsetDecoder
    data, ckpt, extra = MODELS[name]
    return SubsetDecoder([str(data), "--path", str(ckpt), "--cpu", "--batch-size", "100", *extra, *flags],
                         subset="test", scorer=scorer)


def mean_sd(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


# -- parts -----------------------------------------------------------------------------------------------
def optimiser(args, work):
    """Seconds per proposed schedule with 40 observations of a smooth stub (no model), medians of 3."""
    from fairseq_tp.search import BoTorchProposer, ScheduleSpace
    rows = []
    for T, N in ((50, 4), (2000, 4)):
        space = ScheduleSpace(T, N)
        target = [T - 1] + [round(T * f) for f in (0.6, 0.3, 0.05)]
        bump = lambda s: 10 + 20 * math.exp(-sum((a - b) ** 2 for a, b in zip(s.timesteps, target)) / (0.25 * T) ** 2)  # noqa: E731
        history = [(s, bump(s)) for s in [space.baseline()] + space.initial_design(39, 0)]
        exact_too = space.size() <= BoTorchProposer.exact_limit
        modes = [("exact", {}), ("relaxed", {"exact_limit": 0})] if exact_too else [("relaxed", {})]
        for mode, options in modes:
            for q in (1, 8):
                runs = []
                for repeat in range(3):
                    proposer = BoTorchProposer(space, seed=repeat, **options)
                    start = time.perf_counter()
                    picks = proposer.propose(history, len(history), q)
                    runs.append((time.perf_counter() - start) / len(picks))
                rows.append({"T": T, "N": N, "schedules": space.size(), "mode": mode, "q": q,
                             "s_per_schedule": statistics.median(runs)})
    lines = ["| T | N | schedules | acquisition | q | optimiser s per schedule (median of 3) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['T']} | {r['N']} | {r['schedules']:,} | {r['mode']} | {r['q']} | {r['s_per_schedule']:.3f} |"
              for r in rows]
    return rows, lines


def search_phase(args, work):
    """A 40-evaluation 20-shot search of the RDM absorbing fixture, deterministic decoding (R = 1)."""
    runs = []
    for repeat in range(3):
        report = search("rdm-absorbing", work, "--shots", "20", "--budget", "40", "--seed", str(repeat + 1),
                        *DETERMINISTIC)
        result = report.result
        runs.append({"search_s": result.elapsed_s, "decoding_s": result.objective_s, "optimiser_s": result.optimiser_s,
                     "replicates": report.record["replicates"]})
    row = {k: statistics.median(r[k] for r in runs) for k in ("search_s", "decoding_s", "optimiser_s")}
    lines = ["| run | search phase s | decoding + BLEU s | optimiser s |", "|---|---|---|---|"]
    lines += [f"| {i + 1} | {r['search_s']:.2f} | {r['decoding_s']:.2f} | {r['optimiser_s']:.2f} |"
              for i, r in enumerate(runs)]
    lines.append(f"| median | {row['search_s']:.2f} | {row['decoding_s']:.2f} | {row['optimiser_s']:.2f} |")
    return {"runs": runs, "median": row}, lines


def strategies(args, work):
    """Test BLEU of the schedule each strategy finds at equal budget, over seeds."""
    rows, lines = [], ["| model | strategy | budget | test BLEU (mean ± sd over seeds) | few-shot BLEU | "
                       "search s (mean) |", "|---|---|---|---|---|---|"]
    for name in args.models:
        flags = DEFAULT
        test = test_set(name, flags)
        from fairseq_tp.schedules import Schedule
        T = test.num_timesteps
        uniform = test.bleu(Schedule.uniform(4, T), seed=1)
        lines.append(f"| {name} | uniform-4 | — | {uniform:.2f} | — | — |")
        for strategy in ("botorch", "paper", "random"):
            found = [search(name, work, "--shots", "20", "--budget", str(args.budget), "--seed", str(seed),
                            "--strategy", strategy, "--replicates", "1", *flags) for seed in args.seeds]
            bleus = [test.bleu(r.result.best_schedule, seed=1) for r in found]
            few = [r.result.best_bleu for r in found]
            row = {"model": name, "strategy": strategy, "budget": args.budget, "test_bleu": bleus,
                   "few_shot_bleu": few, "search_s": [r.result.elapsed_s for r in found],
                   "schedules": [list(r.result.best_schedule.timesteps) for r in found], "uniform_test_bleu": uniform}
            rows.append(row)
            m, sd = mean_sd(bleus)
            fm, fsd = mean_sd(few)
            lines.append(f"| {name} | {strategy} | {args.budget} | {m:.2f} ± {sd:.2f} | {fm:.2f} ± {fsd:.2f} | "
                         f"{statistics.mean(row['search_s']):.1f} |")
    return rows, lines


def paired(args, work):
    """Searched minus uniform-4 test BLEU, paired on the test decoding's noise seed (with --min-confidence C,
    the schedule the search writes: uniform where the bootstrap guard kept it)."""
    rows = []
    lines = ["| model | replicates | min confidence | mean paired diff (searched − uniform-4) | 2 × s.e. | kept uniform "
             "| few-shot BLEU spread (sd over search seeds) | searched test BLEU | uniform-4 test BLEU |",
             "|---|---|---|---|---|---|---|---|---|"]
    from fairseq_tp.schedules import Schedule
    for name in args.models:
        test = test_set(name, DEFAULT)
        T = test.num_timesteps
        uniform_schedule = Schedule.uniform(4, T)
        decoded = {(uniform_schedule, s): test.bleu(uniform_schedule, seed=s) for s in args.test_seeds}
        uniform = {s: decoded[uniform_schedule, s] for s in args.test_seeds}
        for replicates in (1, 4):
            diffs, few, searched, kept = [], [], [], 0
            for seed in args.search_seeds:
                report = search(name, work, "--shots", "20", "--budget", str(args.budget), "--seed", str(seed),
                                "--replicates", str(replicates), "--min-confidence", str(args.min_confidence),
                                *DEFAULT)
                few.append(report.result.best_bleu)
                kept += report.chosen == uniform_schedule
                for s in args.test_seeds:
                    if (report.chosen, s) not in decoded:
                        decoded[report.chosen, s] = test.bleu(report.chosen, seed=s)
                    bleu = decoded[report.chosen, s]
                    searched.append(bleu)
                    diffs.append(bleu - uniform[s])
            m, sd = mean_sd(diffs)
            se = sd / math.sqrt(len(diffs))
            rows.append({"model": name, "replicates": replicates, "min_confidence": args.min_confidence,
                         "diffs": diffs, "mean": m, "se": se, "kept_uniform": kept, "few_shot_bleu": few,
                         "searched_test_bleu": searched, "uniform_test_bleu": uniform})
            lines.append(f"| {name} | {replicates} | {args.min_confidence} | {m:+.2f} | {2 * se:.2f} | "
                         f"{kept} of {len(args.search_seeds)} | {mean_sd(few)[1]:.2f} | "
                         f"{statistics.mean(searched):.2f} | {statistics.mean(uniform.values()):.2f} |")
    return rows, lines


def distributed(args, work):
    """A whole-valid-set search of the first --models fixture as one process and as two torchrun ranks
    (gloo), one thread each: the search phase (decoding + BLEU + optimiser) from the schedule file."""
    import shutil
    import subprocess
    data, ckpt, extra = MODELS[args.models[0]]
    rows = []
    for repeat in range(args.repeats):
        for ranks in (1, 2):
            output = Path(work) / f"d{ranks}-{repeat}.json"
            command = ["fairseq-tp-search", str(data), "--path", str(ckpt), "--cpu", "--no-progress-bar",
                       "--batch-size", "25", "--steps", "4", "--shots", "all", "--budget", str(args.budget),
                       "--output", str(output), "--seed", str(repeat + 1), *extra, *DETERMINISTIC]
            if ranks > 1:
                command = [shutil.which("torchrun"), "--standalone", "--nproc_per_node", str(ranks), "--no-python",
                           *command]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            wall = time.perf_counter() - start
            record = json.loads(output.read_text())
            rows.append({"ranks": ranks, "repeat": repeat, "search_s": record["elapsed_s"],
                         "decoding_s": record["objective_s"], "optimiser_s": record["optimiser_s"], "wall_s": wall,
                         "bleu": record["bleu"], "timesteps": record["timesteps"]})
    median = {r: {k: statistics.median(x[k] for x in rows if x["ranks"] == r)
                  for k in ("search_s", "decoding_s", "optimiser_s", "wall_s")} for r in (1, 2)}
    same = len({(x["bleu"], tuple(x["timesteps"])) for x in rows if x["repeat"] == 0}) == 1
    lines = ["| ranks | search phase s | decoding + BLEU s | optimiser s | command wall s |", "|---|---|---|---|---|"]
    lines += [f"| {r} | {m['search_s']:.1f} | {m['decoding_s']:.1f} | {m['optimiser_s']:.1f} | {m['wall_s']:.1f} |"
              for r, m in median.items()]
    lines.append(f"\nspeed-up of the search phase: {median[1]['search_s'] / median[2]['search_s']:.2f}x; "
                 f"same schedule and BLEU with 1 and 2 ranks: {same}")
    return {"runs": rows, "median": median}, lines


# -- holds: searched - uniform-N on test, paired over search seeds ----------------------------------------------
# cell: (model, decoding flags, N, search seeds, test noise seeds, search flags); each search runs with
# confirmation on, and the schedule it found before confirming is the "off" row (the same search).
PROBE_SEEDS, FEW_SEEDS = [1, 2, 3, 4, 5], [1, 2, 3]
CELLS = {
    **{f"probe-4-{space}": ("bible-absorbing", DETERMINISTIC, 4, PROBE_SEEDS, [1], ["--search-space", space])
       for space in ("timesteps", "rates", "both")},
    **{f"probe-4-{space}-200shots": ("bible-absorbing", DETERMINISTIC, 4, PROBE_SEEDS, [1],
                                     ["--search-space", space, "--shots", "200", "--confirm-top", "0"])
       for space in ("timesteps", "rates", "both")},
    "probe-4-rates-confirm-all": ("bible-absorbing", DETERMINISTIC, 4, PROBE_SEEDS, [1],
                                  ["--search-space", "rates", "--confirm-shots", "all"]),
    "probe-8-auto": ("bible-absorbing", DETERMINISTIC, 8, FEW_SEEDS, [1], []),
    "probe-default-4": ("bible-absorbing", DEFAULT, 4, FEW_SEEDS, [11, 12, 13], []),
    "rdm-multinomial-4": ("rdm-multinomial", DEFAULT, 4, PROBE_SEEDS, [11, 12, 13], []),
}
# Reference rows, no search: every step (uniform:T) on test.
REFERENCES = {"probe-all-steps": ("bible-absorbing", DETERMINISTIC, 50, [1]),
              "probe-default-all-steps": ("bible-absorbing", DEFAULT, 50, [11, 12, 13])}
HOLDS = HERE / "results" / "holds.json"


def test_decoder(name, flags):
    """Test BLEU scored as fairseq-generate --remove-bpe and sacreBLEU tokenize="none" on the H-/T- lines."""
    from fairseq_tp.fairseq_search.bleu import SacreBleu
    return test_set(name, flags, SacreBleu(tokenize="none"))


def _store_row(key, row):
    """Merge one finished run into results/holds.json (re-read under a lock: parallel runs keep each other's)."""
    import fcntl
    from fairseq_tp.files import atomic_write_text
    HOLDS.parent.mkdir(exist_ok=True)
    with open(str(HOLDS) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(HOLDS.read_text()) if HOLDS.exists() else {}
        rows[key] = row
        atomic_write_text(str(HOLDS), json.dumps(rows, indent=1, sort_keys=True) + "\n")


def _finished():
    return json.loads(HOLDS.read_text()) if HOLDS.exists() else {}


def holds(args, work):
    """Each cell's searches (skipping runs already in results/holds.json) and the test BLEU of what they wrote."""
    from fairseq_tp.schedules import Schedule
    if args.report:
        return None, holds_table(_finished())
    for reference in args.references:
        name, decoding, steps, test_seeds = REFERENCES[reference]
        if reference not in _finished():
            test = test_decoder(name, decoding)
            schedule = Schedule.uniform(steps, test.num_timesteps)
            _store_row(reference, {"cell": reference, "schedule": str(schedule), "test_seeds": test_seeds,
                                   "test": [test.bleu(schedule, s) for s in test_seeds], "machine": machine(),
                                   "date": datetime.datetime.now().isoformat(timespec="minutes")})
    for cell in args.cells:
        name, decoding, steps, seeds, test_seeds, flags = CELLS[cell]
        todo = [seed for seed in seeds if f"{cell}|{seed}" not in _finished()]
        if not todo:
            continue
        test = test_decoder(name, decoding)
        uniform = Schedule.uniform(steps, test.num_timesteps)
        for seed in todo:
            started = time.perf_counter()
            report = search(name, work, "--steps", str(steps), "--budget", str(args.budget), "--seed", str(seed),
                            *decoding, *flags)
            wall = time.perf_counter() - started
            record, confirmation = report.record, report.confirmation or {}
            searched = report.result.best_schedule
            row = {"cell": cell, "seed": seed, "model": name, "decoding": decoding, "steps": steps, "flags": flags,
                   "search_space": record["search_space"], "shots": record["shots"],
                   "uniform": str(uniform), "searched": str(searched), "written": str(report.chosen),
                   "few_shot_uniform": report.result.baseline_bleu, "few_shot_searched": report.result.best_bleu,
                   "search_s": record["elapsed_s"], "confirm_s": confirmation.get("seconds"), "wall_s": wall,
                   "confirmation": {k: confirmation.get(k) for k in ("kept_uniform", "why", "gain", "confidence",
                                                                      "mean_left_out_gain",
                                                                      "left_out_gain_interval")},
                   "confirm_uniform": confirmation["candidates"][0]["bleu"] if "candidates" in confirmation else None,
                   "confirm_written": (confirmation["candidates"][confirmation["chosen"]]["bleu"]
                                       if "candidates" in confirmation else None),
                   "test_seeds": test_seeds,
                   "test_uniform": [test.bleu(uniform, s) for s in test_seeds],
                   "test_searched": [test.bleu(searched, s) for s in test_seeds],
                   "test_written": [test.bleu(report.chosen, s) for s in test_seeds],
                   "date": datetime.datetime.now().isoformat(timespec="minutes"), "machine": machine(),
                   "threads": torch.get_num_threads(), "load_average": os.getloadavg()}
            _store_row(f"{cell}|{seed}", row)
            print(f"{cell} seed {seed}: searched {row['searched']} wrote {row['written']}: test "
                  f"{statistics.mean(row['test_uniform']):.2f} -> searched {statistics.mean(row['test_searched']):.2f}"
                  f", written {statistics.mean(row['test_written']):.2f} ({wall:.0f} s)", flush=True)
    return None, holds_table(_finished())


def _paired(rows, key):
    """Mean and s.e. over search seeds of the seed's mean paired test difference (``key`` − uniform)."""
    diffs = [statistics.mean(a - b for a, b in zip(r[key], r["test_uniform"])) for r in rows]
    m, sd = mean_sd(diffs)
    return m, (sd / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan"))


def holds_table(finished):
    lines = ["| cell | seeds | search space | shots | few-shot gain reported | test: uniform | test: searched − uniform "
             "(confirmation off) | test: written − uniform (confirmation on) | kept uniform | search s | confirm s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for cell in CELLS:
        rows = [finished[k] for k in sorted(finished) if finished[k]["cell"] == cell]
        if not rows:
            continue
        reported = statistics.mean(r["few_shot_searched"] - r["few_shot_uniform"] for r in rows)
        off, off_se = _paired(rows, "test_searched")
        uniform = statistics.mean(statistics.mean(r["test_uniform"]) for r in rows)
        confirmed = [r for r in rows if r["confirm_s"] is not None]
        on = "—"
        if confirmed:
            m, se = _paired(confirmed, "test_written")
            on = f"{m:+.2f} ± {2 * se:.2f}"
        kept = sum(bool(r["confirmation"]["kept_uniform"]) for r in confirmed)
        confirm_s = f"{statistics.median(r['confirm_s'] for r in confirmed):.1f}" if confirmed else "—"
        lines.append(f"| {cell} | {len(rows)} | {rows[0]['search_space']} | {rows[0]['shots']} | {reported:+.2f} | "
                     f"{uniform:.2f} | {off:+.2f} ± {2 * off_se:.2f} | {on} | "
                     f"{f'{kept} of {len(confirmed)}' if confirmed else '—'} | "
                     f"{statistics.median(r['search_s'] for r in rows):.1f} | {confirm_s} |")
    lines.append("\n± is 2 s.e. over search seeds (each seed's paired difference averaged over its test noise seeds).")
    for reference in REFERENCES:
        if reference in finished:
            row = finished[reference]
            lines.append(f"{reference}: {row['schedule']} test BLEU {statistics.mean(row['test']):.2f} "
                         f"(mean over test seeds {row['test_seeds']})")
    return lines


def ranking(args, work):
    """Valid only: after a 20-shot rates search of the probe (--confirm-top 0), which single pick holds on all the
    valid verses beside the shots: the best few-shot score, the best by the GP's posterior mean, or the posterior
    mean's maximiser over 4,000 random schedules?  (How the default candidate ranking was chosen.)"""
    from fairseq_tp.search import ScheduleSpace
    from fairseq_tp.search.gp import rank_by_posterior_mean, posterior_mean_model
    test = test_decoder("bible-absorbing", DETERMINISTIC)
    valid = test.loaded.subset("valid", "--gen-subset")
    rows = []
    for seed in args.search_seeds:
        report = search("bible-absorbing", work, "--budget", str(args.budget), "--seed", str(seed),
                        "--search-space", "rates", "--confirm-top", "0", *DETERMINISTIC)
        trials = report.result.trials
        observations = [(t.schedule, t.bleu) for t in trials]
        curve = tuple(math.cos(math.pi / 2 * (i + 1) / 4) for i in range(4))
        space = ScheduleSpace(50, 4, False, "rates", curve)
        ranked = [s for s in rank_by_posterior_mean(space, observations) if s != trials[0].schedule]
        model = posterior_mean_model(space, observations)
        generator = torch.Generator().manual_seed(seed)
        pool = list(dict.fromkeys(space.random_schedule(generator) for _ in range(4000)))
        with torch.no_grad():
            mean = model.posterior(space.to_tensors(pool)).mean.squeeze(-1)
        picks = {"uniform": trials[0].schedule, "raw best": report.result.best_schedule,
                 "posterior-mean best": ranked[0], "posterior-mean maximiser": pool[int(torch.argmax(mean))]}
        rest = [i for i in range(len(valid)) if i not in set(report.record["shot_ids"])]
        objective = test.loaded.objective(valid, rest, test.scorer, seed=seed, schedules_per_batch=8)
        scores = objective.evaluate(list(picks.values()))
        rows.append({"seed": seed, **{name: [str(p), b] for (name, p), b in zip(picks.items(), scores)}})
    lines = ["| pick | mean valid gain over uniform-4 (480 verses beside the shots) | per seed |", "|---|---|---|"]
    for name in ("raw best", "posterior-mean best", "posterior-mean maximiser"):
        gains = [r[name][1] - r["uniform"][1] for r in rows]
        lines.append(f"| {name} | {statistics.mean(gains):+.2f} | {', '.join(f'{g:+.2f}' for g in gains)} |")
    return rows, lines


def confirm_cost(args, work):
    """The 20-shot search phase of the probe (reparam deterministic, default space) with confirmation on and
    with --confirm-top 0, interleaved, --repeats times each: wall seconds of search and confirmation."""
    rows = []
    for repeat in range(args.repeats):
        for top in ("5", "0"):
            report = search("bible-absorbing", work, "--budget", str(args.budget), "--seed", "1",
                            "--confirm-top", top, *DETERMINISTIC)
            confirmation = report.confirmation or {}
            rows.append({"confirm_top": int(top), "repeat": repeat, "search_s": report.record["elapsed_s"],
                         "decoding_s": report.record["objective_s"], "optimiser_s": report.record["optimiser_s"],
                         "confirm_s": confirmation.get("seconds", 0.0)})
    keys = ("search_s", "decoding_s", "optimiser_s", "confirm_s")
    med = {top: {k: statistics.median(r[k] for r in rows if r["confirm_top"] == top) for k in keys} for top in (5, 0)}
    on, off = med[5]["search_s"] + med[5]["confirm_s"], med[0]["search_s"]
    lines = ["| --confirm-top | search s (decoding + BLEU / optimiser) | confirmation s | search phase s |",
             "|---|---|---|---|"]
    for top, name in ((5, "5 (default)"), (0, "0")):
        m = med[top]
        lines.append(f"| {name} | {m['search_s']:.1f} ({m['decoding_s']:.1f} / {m['optimiser_s']:.1f}) | "
                     f"{m['confirm_s']:.1f} | {m['search_s'] + m['confirm_s']:.1f} |")
    lines.append(f"\nratio {on / off:.2f}x (medians of {args.repeats})")
    return {"runs": rows, "median": med, "ratio": on / off}, lines


PARTS = {"holds": holds, "confirm-cost": confirm_cost, "ranking": ranking, "distributed": distributed, "optimiser": optimiser, "search-phase": search_phase, "strategies": strategies, "paired": paired}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=sorted(MODELS), choices=sorted(MODELS))
    parser.add_argument("--budget", type=int, default=None, help="default: 20 (strategies), 40 (paired)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--search-seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--test-seeds", nargs="+", type=int, default=[11, 12, 13, 14])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-confidence", type=float, default=0.0, help="paired: fairseq-tp-search's guard")
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS), help="holds: which cells")
    parser.add_argument("--report", action="store_true", help="holds: print the table of finished cells only")
    parser.add_argument("--references", nargs="*", default=[], choices=list(REFERENCES),
                        help="holds: also decode these all-steps reference rows")
    args = parser.parse_args()
    args.budget = args.budget or {"strategies": 20, "distributed": 20}.get(args.part, 40)
    models = ({CELLS[c][0] for c in args.cells} if args.part == "holds" else ["bible-absorbing"]
              if args.part in ("confirm-cost", "ranking") else args.models if args.part in ("strategies", "paired")
              else ["rdm-absorbing"])
    for name in models:
        if not MODELS[name][1].is_file():
            sys.exit(f"benchmark.py: error: fixture checkpoint {MODELS[name][1]} not found")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as work:
        info = header(args)
        data, lines = PARTS[args.part](args, work)
    info["load_average_after"] = os.getloadavg()
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    if data is None:  # holds keeps its own file, row by row
        print("\n".join(lines))
        return
    stem = args.part + (f"-confidence{args.min_confidence}" if args.min_confidence else "")
    (results / f"{stem}.json").write_text(json.dumps({**info, "rows": data}, indent=1) + "\n")
    print(f"{info['date']}, {info['machine']}, {info['threads']} thread(s), load average before "
          f"{info['load_average'][0]:.2f} / after {info['load_average_after'][0]:.2f}: `{info['command']}`\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
