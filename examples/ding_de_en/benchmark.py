"""Side-by-side benchmark on the Ding de-en test set (prepare.sh, then train.sh first).

For each diffusion model: all T steps (50, or 2000 for continuous), uniform 4, fairseq-tp-search's 4 steps (botorch, 20 shots, several
seeds), random search at the same budget, and a search on the whole valid set; plus the autoregressive
transformer with beam 5.  Every row decodes the 1,000 test sentences in this process, one row at a time;
sentences/s is the median of --repeats timed runs (encoder, length prediction and decoder passes, as
fairseq-generate times them).  Prints a Markdown table and writes results/benchmark.json.

    python examples/ding_de_en/benchmark.py [--work WORK_DIR] [--threads 2] [--seeds 1 2 3] [--budget 40]
        [--repeats 3] [--full-repeats N]

--full-repeats sets the timed runs of the all-steps rows alone (default: --repeats): the continuous model's
2000-step row decodes the test set in minutes per run on a CPU.
"""
import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
# fairseq-generate's --remove-bpe and Moses detokenisation (Moses takes its languages from the task's).
TEXT = ["--remove-bpe", "--tokenizer", "moses", "--source-lang", "de", "--target-lang", "en"]
# Per model: the decoding every row of it uses.  Absorbing and reparam-multinomial: RDM's recommended
# deterministic routing.  Vanilla multinomial (not trained by train.sh's cpu config): plain multinomial
# decoding.  Continuous: deterministic DDIM jumps, one sample (no MBR).
REPARAM = ["--argmax-decoding", "--decoding-strategy", "reparam-uncond-deterministic-cosine"]
DECODING = {
    "absorbing": REPARAM,
    "reparam-multinomial": REPARAM,
    "multinomial": ["--argmax-decoding"],
    "continuous": [],
}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{platform.machine()} {cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def search(work, model, extra, out_dir, name):
    from fairseq_tp.fairseq_search.cli import parse
    from fairseq_tp.fairseq_search import tune

    output = os.path.join(out_dir, f"{model}.{name}.json")
    for path in (output, output.replace(".json", ".trials.jsonl")):
        if os.path.exists(path):
            os.remove(path)
    cfg, options = parse([os.path.join(work, "bin"), "--path", checkpoint(work, model), "--steps", "4",
                          "--batch-size", "100", "--no-progress-bar", "--output", output, *TEXT,
                          *DECODING[model], *extra])
    start = time.perf_counter()  # the whole command's work: loading the model and data, encoding, searching
    report = tune(cfg, options)
    return report.result.best_schedule, time.perf_counter() - start


def checkpoint(work, model):
    return os.path.join(work, "ckpt", model, "checkpoint_last.pt")


def diffusion_decoder(work, model):
    """A FewShotBleu over the whole test set: decodes any schedule with the model loaded once."""
    from fairseq_tp.fairseq_search.bleu import SacreBleu
    from fairseq_tp.fairseq_search.cli import parse
    from fairseq_tp.fairseq_search.loading import load_for_decoding

    cfg, _ = parse([os.path.join(work, "bin"), "--path", checkpoint(work, model), "--steps", "4",
                    "--batch-size", "100", *TEXT, *DECODING[model]])
    loaded = load_for_decoding(cfg)
    test = loaded.subset("test", "--gen-subset")
    return loaded.objective(test, range(len(test)), SacreBleu(), seed=1, schedules_per_batch=8), loaded.model.diffusion.num_timesteps


def transformer_row(work, repeats):
    from fairseq import checkpoint_utils, options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_tp.fairseq_search.bleu import SacreBleu
    from fairseq_tp.fairseq_search.objective import translation
    from fairseq_tp.fairseq_search.loading import text_post_processing

    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, [os.path.join(work, "bin"), "--path", checkpoint(work, "transformer"),
                                                "--beam", "5", "--batch-size", "100", *TEXT])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    models, _ = checkpoint_utils.load_model_ensemble([cfg.common_eval.path], task=task)
    model = models[0].eval()
    if torch.cuda.is_available():
        model.cuda()
    task.load_dataset("test")
    test = task.dataset("test")
    generator = task.build_generator([model], cfg.generation)
    decode_fn, tgt = text_post_processing(cfg, task), task.target_dictionary
    batches = test.batch_by_size(test.ordered_indices(), max_tokens=None, max_sentences=100)
    samples = [test.collater([test[int(i)] for i in b]) for b in batches]
    if torch.cuda.is_available():
        samples = [utils.move_to_cuda(s) for s in samples]
    strip = generator.symbols_to_strip_from_output

    def run():
        translations, start = [], time.perf_counter()
        for sample in samples:
            hypos = task.inference_step(generator, [model], sample)
            for row, sentence_hypos in enumerate(hypos):
                translations.append(translation(tgt, sample, row, sentence_hypos[0]["tokens"], strip,
                                                cfg.common_eval.post_process, decode_fn))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return SacreBleu().score(translations), len(translations) / (time.perf_counter() - start)

    run()  # warm-up
    results = [run() for _ in range(repeats)]
    return results[0][0], statistics.median(s for _, s in results)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=os.path.join(HERE, "work"))
    parser.add_argument("--models", nargs="+", default=["absorbing", "reparam-multinomial", "continuous"],
                        choices=sorted(DECODING))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", default=os.path.join(HERE, "results", "benchmark.json"))
    parser.add_argument("--langs", nargs=2, default=["de", "en"], metavar=("SRC", "TGT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    TEXT[-3], TEXT[-1] = args.langs  # for smoke tests on other data
    for model in args.models + ["transformer"]:
        if not os.path.isfile(checkpoint(args.work, model)):
            sys.exit(f"benchmark.py: error: no checkpoint {checkpoint(args.work, model)}; run train.sh first")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    logging.getLogger("fairseq_tp").setLevel(logging.INFO)
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    searches = os.path.join(args.work, "searches")
    os.makedirs(searches, exist_ok=True)
    budget = ["--budget", str(args.budget)]

    from fairseq_tp.schedules import Schedule
    from fairseq_tp.fairseq_search.timing import time_schedules
    report = {"date": datetime.date.today().isoformat(), "machine": machine(), "threads": args.threads,
              "repeats": args.repeats, "full_repeats": args.full_repeats or args.repeats,
              "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]), "models": []}
    for model in args.models:
        decoder, T = diffusion_decoder(args.work, model)
        found = {}  # row -> [(schedule, search seconds) per seed]
        for strategy, row in (("botorch", "tp-4-20shot"), ("random", "random-4-20shot")):
            found[row] = [search(args.work, model, ["--shots", "20", "--seed", str(seed), "--strategy", strategy,
                                                    *budget], searches, f"{row}.seed{seed}") for seed in args.seeds]
        found["tp-4-full"] = [search(args.work, model, ["--shots", "all", "--seed", "1", *budget], searches,
                                     "tp-4-full")]
        full = {f"vanilla-{T}": Schedule.uniform(T, T)}
        schedules = {"vanilla-4": Schedule.uniform(4, T)}
        for row, runs in found.items():
            for i, (schedule, _) in enumerate(runs):
                schedules[f"{row}#{i}"] = schedule
        timed = time_schedules(decoder, full, args.full_repeats or args.repeats)
        timed.update(time_schedules(decoder, schedules, args.repeats))
        schedules.update(full)
        measured = {name: (row["bleu"], row["sents_per_s"]) for name, row in timed.items()}
        full_speed = measured[f"vanilla-{T}"][1]
        rows = []
        for row in [f"vanilla-{T}", "vanilla-4", *found]:
            keys = [k for k in measured if k == row or k.startswith(row + "#")]
            bleus, speeds = [measured[k][0] for k in keys], [measured[k][1] for k in keys]
            search_s = [s for _, s in found.get(row, [])]
            rows.append({"row": row, "steps": schedules[keys[0]].steps, "bleu": round(statistics.mean(bleus), 2),
                         "bleu_std": round(statistics.stdev(bleus), 2) if len(bleus) > 1 else 0.0,
                         "sents_per_s": round(statistics.median(speeds), 1),
                         "speedup": round(statistics.median(speeds) / full_speed, 2),
                         "search_s": round(statistics.mean(search_s), 1) if search_s else None,
                         "timesteps": [list(schedules[k].timesteps) for k in keys]})
        report["models"].append({"model": model, "decoding": " ".join(DECODING[model]), "rows": rows})
    bleu, speed = transformer_row(args.work, args.repeats)
    report["models"].append({"model": "transformer", "decoding": "beam 5", "rows": [
        {"row": "transformer-beam5", "steps": None, "bleu": round(bleu, 2), "bleu_std": 0.0,
         "sents_per_s": round(speed, 1), "speedup": None, "search_s": None}]})

    tmp = args.results + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, args.results)
    print(markdown(report))


def markdown(report) -> str:
    timing = f"median of {report['repeats']} timed runs per row"
    if report["full_repeats"] != report["repeats"]:
        timing += f" ({report['full_repeats']} for the all-steps rows)"
    lines = [f"{report['date']}, {report['machine']}, {report['threads']} threads, {timing}: `{report['command']}`", "",
             "| model | row | steps (NFE) | test BLEU (sacrebleu) | sentences/s | speed-up vs full | search wall time (s) |",
             "|---|---|---|---|---|---|---|"]
    for entry in report["models"]:
        for r in entry["rows"]:
            bleu = f"{r['bleu']:.2f}" + (f" ± {r['bleu_std']:.2f}" if r["bleu_std"] else "")
            speedup = f"{r['speedup']:.1f}x" if r["speedup"] else "—"
            search_s = f"{r['search_s']:.1f}" if r["search_s"] is not None else "—"
            lines.append(f"| {entry['model']} | {r['row']} | {r['steps'] or '—'} | {bleu} | {r['sents_per_s']:.1f} "
                         f"| {speedup} | {search_s} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
