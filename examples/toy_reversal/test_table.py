"""Test sacreBLEU of several schedules, each the mean over noise seeds, decoded in one process (the model
loaded once). Prints a markdown table and writes it as JSON.

Usage: python test_table.py --json OUT.json --seeds 1 2 3 --schedule NAME=SPEC [...] -- DATA --path CKPT [fairseq-generate options]
SPEC is anything --tp-schedule takes: uniform:4, 49,33,12,0 or a schedule file from fairseq-tp-search.
"""
import argparse
import json
import statistics
import sys
import time

from fairseq_tp.errors import PREFIX, UsageError
from fairseq_tp.files import atomic_write_text
from fairseq_tp.fairseq_search import SubsetDecoder
from fairseq_tp.schedules import ScheduleSpec


def named_schedule(text):
    name, sep, spec = text.partition("=")
    if not sep or not name or not spec:
        raise argparse.ArgumentTypeError(f"expected NAME=SPEC, got '{text}'")
    return name, ScheduleSpec.parse(spec)


def main(argv):
    ours, generate_args = _split(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedule", type=named_schedule, action="append", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--subset", default="test")
    parser.add_argument("--json", required=True)
    args = parser.parse_args(ours)
    decoder = SubsetDecoder(generate_args, subset=args.subset)
    rows, speed = [], {}
    for name, spec in args.schedule:
        schedule = spec.resolve(decoder.num_timesteps)
        start = time.perf_counter()
        bleus = decoder.bleus(schedule, args.seeds)
        # the decoder keeps its scores: a schedule met again (search kept uniform) is not decoded again
        if schedule not in speed:
            speed[schedule] = len(decoder.sentence_ids) * len(args.seeds) / (time.perf_counter() - start)
        rows.append({"schedule": name, "timesteps": list(schedule.timesteps), "passes": schedule.steps,
                     "bleu": round(statistics.mean(bleus), 2), "bleus": [round(b, 2) for b in bleus],
                     "sents_per_s": round(speed[schedule], 1)})
    print(f"| schedule | timesteps | decoder passes | test sacreBLEU, mean of seeds {', '.join(map(str, args.seeds))} "
          f"| per seed | sentences/s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        steps = row["timesteps"]
        shown = ",".join(map(str, steps)) if len(steps) <= 8 else f"{steps[0]},{steps[1]},…,{steps[-1]}"
        print(f"| {row['schedule']} | {shown} | {row['passes']} | {row['bleu']:.2f} | "
              f"{' / '.join(f'{b:.2f}' for b in row['bleus'])} | {row['sents_per_s']} |")
    atomic_write_text(args.json, json.dumps({"subset": args.subset, "seeds": args.seeds, "rows": rows}, indent=1))


def _split(argv):
    if "--" not in argv:
        raise UsageError("give the fairseq-generate options after --")
    i = argv.index("--")
    return argv[:i], argv[i + 1:]


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UsageError as e:
        sys.exit(PREFIX + e.message)
