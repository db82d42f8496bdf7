"""The Bible benchmark: every model's rows on one task's test set, timed side by side (prepare.sh, train.sh first).

Per diffusion model: all T steps (`vanilla-50`, `vanilla-2000` for continuous), uniform 4 (`vanilla-4`),
fairseq-tp-search's 4 steps on 20 valid verses with botorch, random and the paper's strategy at the same
budget (one search per --seeds entry: mean ± sd), and on the whole valid set (`tp-4-full`). Reference rows:
copying the source, and fairseq's autoregressive transformer with beam 5. Every row of a model decodes the
test set in one process, the rows interleaved over --repeats timed runs (sentences/s is their median; encoder,
length prediction and decoder passes, as fairseq-generate times them).

Test BLEU is sacreBLEU (13a, lower-cased) of the detokenised output (--remove-bpe, then Moses detokenisation)
against the original cased WEB verses (`WORK/TASK/text/test.ref.tgt`), as README.md scores it. The searches
score few-shot BLEU as fairseq-tp-search does (sacreBLEU of the tokenised text).

Models run separately and resumably: each run replaces its models' entries in --results (JSON, default
results/TASK.json) and prints the table of everything there.

    python examples/bible/benchmark.py [--work WORK] [--task kjv-web] [--models absorbing ...] [--seeds 1 2 3]
        [--budget 40] [--repeats 3] [--full-repeats N] [--threads 1]
"""
import argparse
import datetime
import json
import logging
import os
import statistics
import sys
import time

import torch

from fairseq_tp.fairseq_search.bleu import SacreBleu
from fairseq_tp.fairseq_search.timing import machine_summary as machine
from fairseq_tp.files import atomic_write_text
from fairseq_tp.schedules import write_schedule_file

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WORK = os.environ.get("FAIRSEQ_TP_BIBLE", os.path.expanduser("~/.cache/fairseq-tp/bible"))
# Per model: the decoding every row of it uses.  Discrete models: RDM's deterministic reparameterised routing
# (R = 1 in the search).  Continuous: DDIM with eta 0 from a random x_T (the search's default 4 noise draws).
REPARAM = ["--argmax-decoding", "--decoding-strategy", "reparam-uncond-deterministic-cosine"]
# Vanilla multinomial as the Temporal Pruning paper decoded it: RDM's default strategy, argmax.  It starts from
# uniform noise, so the search scores each schedule over noise draws and the test rows average --noise-seeds.
DECODING = {"absorbing": REPARAM, "reparam-multinomial": REPARAM, "continuous": [],
            "multinomial": ["--argmax-decoding", "--decoding-strategy", "default"]}
DISTILLED = "-distilled"  # train.sh's suffix for a model trained on the teacher's outputs (DATA=distilled)


def decoding_of(name):
    """The decoding flags of a benchmarked model, e.g. 'absorbing' or 'absorbing-distilled'."""
    return DECODING[name.removesuffix(DISTILLED)]


def written_schedule(search, T):
    """The schedule a search wrote: its timesteps and, where it tuned them, its rates."""
    from fairseq_tp.schedules import Schedule
    return Schedule(tuple(search["timesteps"]), T, tuple(search["rates"]) if search.get("rates") else None)


STRATEGIES = (("botorch", "tp-4-20shot"), ("random", "random-4-20shot"), ("paper", "paper-4-20shot"))


class OriginalReferences(SacreBleu):
    """sacreBLEU (lower-cased) of Moses-detokenised hypotheses against the original verses, by sentence id."""

    def __init__(self, references, lowercase=True):
        from sacremoses import MosesDetokenizer
        super().__init__(lowercase=lowercase)
        self.references = references
        self.detokenizer = MosesDetokenizer("en")  # the target is the WEB in both tasks

    def hypothesis_of(self, translation) -> str:
        return self.detokenizer.detokenize(translation.hypothesis.split())

    def reference_of(self, translation) -> str:
        return self.references[translation.sentence_id]


class Bench:
    def __init__(self, args):
        self.args = args
        self.task_dir = os.path.join(args.work, args.task)
        self.bin = os.path.join(self.task_dir, "bin")
        self.searches = os.path.join(args.work, "searches", args.task)
        with open(os.path.join(self.task_dir, "text", "test.ref.tgt"), encoding="utf-8") as f:
            self.references = [line.rstrip("\n") for line in f]
        self.scorer = OriginalReferences(self.references)

    def checkpoint(self, model):
        return os.path.join(self.args.work, "ckpt", f"{self.args.task}-{model}", "checkpoint_last.pt")

    def updates(self, model):
        from fairseq_tp.fairseq_glue.checkpoints import allow_fairseq_checkpoints
        allow_fairseq_checkpoints()
        state = torch.load(self.checkpoint(model), map_location="cpu", weights_only=True, mmap=True)
        history = state.get("optimizer_history") or [{}]
        return history[-1].get("num_updates")  # None where a checkpoint was stripped of it

    def search(self, model, name, *, shots, seed, strategy="botorch", steps=4):
        from fairseq_tp.fairseq_search import tune
        from fairseq_tp.fairseq_search.cli import parse

        output = os.path.join(self.searches, f"{model}.{name}.json")
        argv = [self.bin, "--path", self.checkpoint(model), "--steps", str(steps), "--batch-size", "100",
                "--no-progress-bar", "--output", output, "--remove-bpe", *decoding_of(model), "--shots", str(shots),
                "--seed", str(seed), "--strategy", strategy, "--budget", str(self.args.budget)]
        record = self.finished_search(output, steps=steps, shots=shots, seed=seed, strategy=strategy)
        if record is not None:
            print(f"[bible] reusing {output} (same checkpoint and options)", flush=True)
            return self.summary(record, record.get("benchmark_wall_s"))
        for path in (output, output.replace(".json", ".trials.jsonl")):
            if os.path.exists(path):
                os.remove(path)  # an unfinished or different search: start afresh
        cfg, options = parse(argv)
        start = time.perf_counter()
        report = tune(cfg, options)
        wall = round(time.perf_counter() - start, 3)
        with open(output) as f:
            record = json.load(f)
        record.update(benchmark_wall_s=wall)
        write_schedule_file(output, report.chosen, **{k: v for k, v in record.items()
                                                      if k not in ("timesteps", "num_timesteps", "rates", "steps")})
        return self.summary(record, wall)

    def finished_search(self, output, *, steps, shots, seed, strategy):
        """A finished search of this checkpoint with these settings and this benchmark's decoding, or None."""
        from fairseq_tp.fairseq_search.loading import sha256_of
        if self.args.fresh_searches or not os.path.isfile(output):
            return None
        with open(output) as f:
            record = json.load(f)
        wanted = {"steps": steps, "shots": shots if shots == "all" else int(shots), "seed": seed,
                  "strategy": strategy}
        log = output.replace(".json", ".trials.jsonl")  # its header has the budget (the paper's strategy
        if not os.path.isfile(log):                      # can spend some of it without decoding)
            return None
        with open(log) as f:
            budget = json.loads(f.readline()).get("config", {}).get("budget")
        decoding, flags = record.get("decoding", {}), decoding_of(self.model_of(output))
        strategy_flag = flags[flags.index("--decoding-strategy") + 1] if "--decoding-strategy" in flags else "default"
        same = ({k: record.get(k) for k in wanted} == wanted and budget == self.args.budget
                and decoding.get("argmax") == ("--argmax-decoding" in flags)
                and decoding.get("strategy") == strategy_flag
                and record.get("checkpoint_sha256") == sha256_of(record.get("checkpoint", "")))
        return record if same else None

    def model_of(self, output):
        return os.path.basename(output).split(".")[0]

    @staticmethod
    def summary(record, wall):
        confirmation = record.get("confirmation") or {}
        return {"timesteps": record["timesteps"], "rates": record.get("rates"), "few_shot_bleu": record["bleu"],
                "uniform_few_shot_bleu": record["uniform_bleu"], "replicates": record["replicates"],
                "search_s": record["elapsed_s"], "decoding_s": record.get("objective_s", record.get("model_s")),  # model_s: files before 2026-12-04
                "optimiser_s": record["optimiser_s"], "wall_s": wall,
                "searched_few_shot_bleu": record.get("searched_bleu"),
                "kept_uniform": confirmation.get("kept_uniform"), "confirmation_gain": confirmation.get("gain")}

    def test_decoder(self, model):
        """A FewShotBleu over the whole test set: decodes any schedule with the model loaded once."""
        from fairseq_tp.fairseq_search import SubsetDecoder

        decoder = SubsetDecoder([self.bin, "--path", self.checkpoint(model), "--batch-size", "100", "--remove-bpe",
                                 *decoding_of(model)], subset="test", scorer=self.scorer, limit=self.args.limit,
                                 schedules_per_batch=8)
        return decoder

    def diffusion_rows(self, model):
        from fairseq_tp.fairseq_search.timing import time_schedules
        from fairseq_tp.schedules import Schedule

        args = self.args
        os.makedirs(self.searches, exist_ok=True)
        searches = {}
        for strategy, row in STRATEGIES:
            if strategy not in args.strategies:
                continue
            searches[row] = [self.search(model, f"{row}.seed{seed}", shots=20, seed=seed, strategy=strategy)
                             for seed in args.seeds]
        if not args.skip_full_search:
            searches["tp-4-full"] = [self.search(model, "tp-4-full", shots="all", seed=1)]
        decoder = self.test_decoder(model)
        T = decoder.num_timesteps
        noise_seeds = [1] if decoder.deterministic else args.noise_seeds
        full = {f"vanilla-{T}": Schedule.uniform(T, T)}
        schedules = {"vanilla-4": Schedule.uniform(4, T)}
        for row, runs in searches.items():
            for i, run in enumerate(runs):
                schedules[f"{row}#{i}"] = written_schedule(run, T)
        print(f"[bible] {model}: decoding the test set under {len(full) + len(schedules)} schedules, noise seeds "
              f"{noise_seeds}", flush=True)
        timed = {}  # {noise seed: {schedule name: bleu, sents/s}}; timed only under the first seed
        for n, seed in enumerate(noise_seeds):
            objective = decoder.objective(seed)
            progress = f"[bible] {model}, noise seed {seed}"
            timed[seed] = time_schedules(objective, full, (args.full_repeats or args.repeats) if n == 0 else 1,
                                         progress=progress)
            timed[seed].update(time_schedules(objective, schedules, args.repeats if n == 0 else 1, progress=progress))
        first = timed[noise_seeds[0]]
        full_speed = first[f"vanilla-{T}"]["sents_per_s"]

        def bleus_of(key):
            return [timed[seed][key]["bleu"] for seed in noise_seeds]

        rows = []
        for row in [f"vanilla-{T}", "vanilla-4", *searches]:
            keys = [k for k in first if k == row or k.startswith(row + "#")]
            bleus = [b for k in keys for b in bleus_of(k)]  # search seed major, noise seed minor
            speeds = [first[k]["sents_per_s"] for k in keys]
            entry = {"row": row, "steps": len(first[keys[0]]["timesteps"]), "bleu": round(statistics.mean(bleus), 2),
                     "bleu_sd": round(statistics.stdev(bleus), 2) if len(bleus) > 1 else None,
                     "bleus": [round(b, 2) for b in bleus], "noise_seeds": noise_seeds,
                     "sents_per_s": round(statistics.median(speeds), 2),
                     "speedup": round(statistics.median(speeds) / full_speed, 2),
                     "timesteps": [first[k]["timesteps"] for k in keys],
                     "rates": [list(schedules[k].rates) if k in schedules and schedules[k].rates else None
                               for k in keys]}
            for other in (f"vanilla-{T}", "vanilla-4"):  # paired: the same test verses and noise seed
                if row != other and not (row == f"vanilla-{T}" and other == "vanilla-4"):
                    diffs = [b - o for k in keys for b, o in zip(bleus_of(k), bleus_of(other))]
                    entry[f"minus_{other}"] = {"mean": round(statistics.mean(diffs), 2),
                                               "sd": round(statistics.stdev(diffs), 2) if len(diffs) > 1 else None,
                                               "positive": sum(d > 0 for d in diffs), "pairs": len(diffs)}
            if row in searches:
                runs = searches[row]
                for key in ("search_s", "decoding_s", "optimiser_s", "wall_s", "few_shot_bleu"):
                    values = [r[key] for r in runs if r[key] is not None]  # wall_s: None for reused searches
                    entry[key] = round(statistics.mean(values), 2) if values else None
                entry["uniform_few_shot_bleu"] = round(statistics.mean(r["uniform_few_shot_bleu"] for r in runs), 2)
                entry["replicates"] = runs[0]["replicates"]
                entry["kept_uniform"] = sum(bool(r.get("kept_uniform")) for r in runs)
            rows.append(entry)
        return {"decoding": " ".join(decoding_of(model)) or "ddim, eta 0", "rows": rows}

    def sweep_rows(self, model, steps):
        """How many steps keep the all-steps BLEU: uniform-N and a 20-shot botorch search per N (seed 1)."""
        from fairseq_tp.fairseq_search.timing import time_schedules
        from fairseq_tp.schedules import Schedule

        os.makedirs(self.searches, exist_ok=True)
        found = {n: self.search(model, f"sweep-{n}", shots=20, seed=1, steps=n) for n in steps}
        decoder = self.test_decoder(model)
        T = decoder.num_timesteps
        schedules = {}
        for n in steps:
            schedules[f"vanilla-{n}"] = Schedule.uniform(n, T)
            schedules[f"tp-{n}"] = written_schedule(found[n], T)
        print(f"[bible] {model}: decoding the test set under {len(schedules)} schedules (sweep)", flush=True)
        timed = time_schedules(decoder.objective(seed=1), schedules, self.args.repeats,
                               progress=f"[bible] {model} sweep")
        return [{"steps": n, "uniform_bleu": round(timed[f"vanilla-{n}"]["bleu"], 2),
                 "searched_bleu": round(timed[f"tp-{n}"]["bleu"], 2), "searched_timesteps": found[n]["timesteps"],
                 "searched_rates": found[n]["rates"],
                 "uniform_sents_per_s": round(timed[f"vanilla-{n}"]["sents_per_s"], 2),
                 "searched_sents_per_s": round(timed[f"tp-{n}"]["sents_per_s"], 2),
                 "search_s": found[n]["search_s"]} for n in steps]

    def transformer_rows(self):
        from fairseq import checkpoint_utils, options, tasks

        import fairseq_tp.fairseq_glue  # noqa: F401  (the checkpoint allow-list)
        from fairseq_tp.fairseq_search.objective import translation

        parser = options.get_generation_parser()
        cli = options.parse_args_and_arch(parser, [self.bin, "--path", self.checkpoint("transformer"), "--beam", "5",
                                                   "--batch-size", "100", "--remove-bpe", "--gen-subset", "test"])
        from fairseq.dataclass.utils import convert_namespace_to_omegaconf
        cfg = convert_namespace_to_omegaconf(cli)
        task = tasks.setup_task(cfg.task)
        models, _ = checkpoint_utils.load_model_ensemble([cfg.common_eval.path], task=task)
        model = models[0].eval()
        task.load_dataset("test")
        test = task.dataset("test")
        generator = task.build_generator([model], cfg.generation)
        ids = test.ordered_indices()
        if self.args.limit:
            ids = ids[ids < self.args.limit]
        samples = [test.collater([test[int(i)] for i in b])
                   for b in test.batch_by_size(ids, max_tokens=None, max_sentences=100)]
        strip, tgt = generator.symbols_to_strip_from_output, task.target_dictionary

        def run():
            translations, start = [], time.perf_counter()
            with torch.no_grad():
                for sample in samples:
                    for row, hypos in enumerate(task.inference_step(generator, [model], sample)):
                        translations.append(translation(tgt, sample, row, hypos[0]["tokens"], strip,
                                                        cfg.common_eval.post_process, lambda x: x))
            return self.scorer.score(translations), len(translations) / (time.perf_counter() - start)

        run()  # warm-up
        results = [run() for _ in range(self.args.repeats)]
        return {"decoding": "beam 5", "rows": [{"row": "transformer-beam5", "steps": None, "bleu": round(results[0][0], 2),
                                                "sents_per_s": round(statistics.median(s for _, s in results), 2)}]}

    def copy_rows(self):
        with open(os.path.join(self.task_dir, "text", "test.ref.src"), encoding="utf-8") as f:
            sources = [line.rstrip("\n") for line in f]
        n = self.args.limit or len(sources)
        bleu = self.scorer.corpus(sources[:n], self.references[:n])
        return {"decoding": "the source verse itself", "rows": [{"row": "copy-source", "steps": None,
                                                                  "bleu": round(bleu, 2)}]}


def run_info(args, model, bench):
    info = {"date": datetime.date.today().isoformat(), "machine": machine(), "threads": args.threads,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
            "repeats": args.repeats, "full_repeats": args.full_repeats or args.repeats}
    if model != "copy":
        info["data"] = "distilled" if model.endswith(DISTILLED) else "raw"  # the targets it was trained on
    updates = None if model == "copy" else bench.updates(model)
    if updates is not None:
        info["checkpoint_updates"] = updates
    if model != "copy":
        from fairseq_tp.fairseq_search.loading import sha256_of
        info["checkpoint_sha256"] = sha256_of(bench.checkpoint(model))
    return info


def same_checkpoint(a, b) -> bool:
    """Whether two entries measured the same checkpoint: by hash where both have one (entries since 2026-12-05),
    else by update count."""
    if a.get("checkpoint_sha256") and b.get("checkpoint_sha256"):
        return a["checkpoint_sha256"] == b["checkpoint_sha256"]
    return a.get("checkpoint_updates") == b.get("checkpoint_updates")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=DEFAULT_WORK)
    parser.add_argument("--task", default="kjv-web", choices=["kjv-web", "rv-web"])
    parser.add_argument("--models", nargs="+", default=["copy", "absorbing", "reparam-multinomial", "continuous",
                                                        "transformer"], choices=["copy", "transformer", *DECODING])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--strategies", nargs="+", default=[s for s, _ in STRATEGIES], choices=[s for s, _ in STRATEGIES],
                        help="the 20-shot searches to run (default all three)")
    parser.add_argument("--noise-seeds", nargs="+", type=int, default=[1, 2, 3],
                        help="noise seeds of the test rows where decoding draws random numbers (vanilla "
                             "multinomial's start tokens); deterministic decodings use seed 1 alone")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-repeats", type=int, default=None, help="timed runs of the all-steps rows "
                        "(default --repeats; continuous models' 2000 steps take minutes per run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-full-search", action="store_true",
                        help="leave out tp-4-full (a whole-valid search with 4 noise draws costs ~100 min on one "
                             "CPU thread for reparam-multinomial)")
    parser.add_argument("--fresh-searches", action="store_true",
                        help="search again even where WORK/searches holds this benchmark's result for the same "
                             "checkpoint and options (default: reuse it, so an interrupted run resumes)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test verses (smoke runs)")
    parser.add_argument("--sweep", nargs="+", type=int, default=None, metavar="N",
                        help="instead of the table's rows: uniform-N and searched-N test BLEU for these N "
                             "(how many steps keep the all-steps BLEU), stored under 'sweeps'")
    parser.add_argument("--data", choices=["raw", "distilled"], default="raw",
                        help="the diffusion models' training targets: raw (the paper's setting) or distilled "
                             "(train.sh DATA=distilled: the transformer's beam outputs); stored as MODEL-distilled")
    parser.add_argument("--results", default=None, help="default results/TASK.json beside this script")
    args = parser.parse_args()
    if args.data == "distilled":
        args.models = [m if m in ("copy", "transformer") else m + DISTILLED for m in args.models]
    args.results = args.results or os.path.join(HERE, "results", f"{args.task}.json")
    bench_dir = os.path.join(args.work, args.task, "text", "test.ref.tgt")
    if not os.path.isfile(bench_dir):
        sys.exit(f"benchmark.py: error: {bench_dir} is missing; run examples/bible/prepare.sh first")
    bench = Bench(args)
    for model in args.models:
        if model != "copy" and not os.path.isfile(bench.checkpoint(model)):
            sys.exit(f"benchmark.py: error: no checkpoint {bench.checkpoint(model)}; run examples/bible/train.sh first")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    logging.getLogger("fairseq_tp").setLevel(logging.INFO)
    logging.getLogger("sacrebleu").setLevel(logging.ERROR)  # the searches score tokenised text, on purpose

    for model in args.models:
        if args.sweep and model in ("copy", "transformer"):
            continue
        info = run_info(args, model, bench)
        start = time.perf_counter()
        if args.sweep:
            entry = {**info, "rows": bench.sweep_rows(model, args.sweep)}
        else:
            entry = {**info, **(bench.copy_rows() if model == "copy" else bench.transformer_rows()
                                if model == "transformer" else bench.diffusion_rows(model))}
        entry["benchmark_s"] = round(time.perf_counter() - start, 1)
        store(args.results, "sweeps" if args.sweep else "models", model, entry, bench.scorer.signature, args.task)
    if os.path.isfile(args.results):
        with open(args.results) as f:
            print(markdown(json.load(f)))


def store(path, section, model, entry, scorer, task):
    """Put one model's entry into the results file, re-read just before writing so that runs of other
    models in parallel keep theirs; atomic, so an interrupted run leaves the file whole."""
    results = {"task": task, "scorer": scorer, "models": {}}
    if os.path.isfile(path):
        with open(path) as f:
            results = json.load(f)
    results.setdefault(section, {})[model] = entry
    results["scorer"] = scorer
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, json.dumps(results, indent=2))
    return results


ORDER = ["copy", "absorbing", "reparam-multinomial", "multinomial", "continuous", "transformer"]


def markdown(results) -> str:
    lines = [f"Task {results['task']}, test set; BLEU: sacreBLEU {results['scorer']}", "",
             "| model | row | steps (NFE) | test BLEU | sentences/s | speed-up vs all steps | few-shot BLEU "
             "(uniform-4) | search s: total = decoding + optimiser |", "|---|---|---|---|---|---|---|---|"]
    def order(name):
        base = name.removesuffix(DISTILLED)
        return (ORDER.index(base) if base in ORDER else len(ORDER), name.endswith(DISTILLED))
    models = sorted(results["models"], key=order)
    for model in models:
        for r in results["models"][model]["rows"]:
            bleu = f"{r['bleu']:.2f}" + (f" ± {r['bleu_sd']:.2f}" if r.get("bleu_sd") else "")
            speed = f"{r['sents_per_s']:.1f}" if r.get("sents_per_s") else "—"
            speedup = f"{r['speedup']:.1f}x" if r.get("speedup") else "—"
            few = f"{r['few_shot_bleu']:.2f} ({r['uniform_few_shot_bleu']:.2f})" if "few_shot_bleu" in r else "—"
            search = (f"{r['search_s']:.1f} = {r['decoding_s']:.1f} + {r['optimiser_s']:.1f}"
                      if "search_s" in r else "—")
            lines.append(f"| {model} | {r['row']} | {r['steps'] or '—'} | {bleu} | {speed} | {speedup} | {few} "
                         f"| {search} |")
    paired = [(model, r) for model in models for r in results["models"][model]["rows"]
              if any(k.startswith("minus_") for k in r)]
    if paired:
        lines += ["", "Paired differences on the test set (the same verses and noise seed; mean ± sd over search "
                  "seeds × noise seeds, and how many pairs are above 0):", "",
                  "| model | row | − vanilla-4 | − all steps |", "|---|---|---|---|"]
        for model, r in paired:
            full = next(k for k in r if k.startswith("minus_vanilla-") and k != "minus_vanilla-4")
            cells = []
            for key in ("minus_vanilla-4", full):
                d = r.get(key)
                sd = f" ± {d['sd']:.2f}" if d and d["sd"] is not None else ""
                cells.append(f"{d['mean']:+.2f}{sd} ({d['positive']}/{d['pairs']})" if d else "—")
            lines.append(f"| {model} | {r['row']} | {cells[0]} | {cells[1]} |")
    for model, sweep in results.get("sweeps", {}).items():
        table = results["models"].get(model, {})
        full = next((r["bleu"] for r in table.get("rows", [])
                     if r["row"].startswith("vanilla-") and r["steps"] > 4), None)
        if full is not None and not same_checkpoint(sweep, table):  # retrained since the sweep: no share
            full, why = None, (f"? — the table's {model} is another checkpoint ({table.get('checkpoint_updates')} "
                               f"updates; the sweep's has {sweep.get('checkpoint_updates')})")
        else:
            why = full if full is not None else "?"
        lines += ["", f"{model}: steps against the all-steps BLEU ({why}); "
                  f"searched = botorch, 20 shots, seed 1, budget as above",
                  "", "| steps | uniform | share | searched | share | searched schedule |", "|---|---|---|---|---|---|"]
        for r in sweep["rows"]:
            def share(b):
                return f"{b / full:.1%}" if full else "—"
            lines.append(f"| {r['steps']} | {r['uniform_bleu']:.2f} | {share(r['uniform_bleu'])} | "
                         f"{r['searched_bleu']:.2f} | {share(r['searched_bleu'])} | "
                         f"{','.join(map(str, r['searched_timesteps']))}"
                         f"{' rates ' + ','.join(map(str, r['searched_rates'])) if r.get('searched_rates') else ''} |")
    lines.append("")
    for model in models:
        m = results["models"][model]
        updates = f", {m['checkpoint_updates']} updates" if "checkpoint_updates" in m else ""
        lines.append(f"- {model} ({m['decoding']}{updates}): {m['date']}, {m['machine']}, {m['threads']} thread(s), "
                     f"load average {m['load_average'][0]}, median of {m['repeats']} timed runs; `{m['command']}`")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
