"""``fairseq-tp-search``: fairseq-generate's options plus the search's own (:class:`SearchConfig`).

    fairseq-tp-search data-bin/x --path ckpt.pt --steps 4 --shots 20 --budget 40 --output schedule.json
    fairseq-generate data-bin/x --user-dir fairseq_tp --task diffusion_translation --path ckpt.pt \\
        --tp-schedule schedule.json
"""
import logging
import os
import statistics
import sys
import warnings
from contextlib import contextmanager
from typing import List, Optional, Tuple

from ..errors import UsageError
from ..schedules import Schedule

PROG = "fairseq-tp-search"


HYDRA_DEPRECATIONS = (r"hydra\.experimental\.\w+\(\) is no longer experimental", r"\s*The version_base parameter",
                      r"In 'config': Usage of deprecated keyword", r"\s*'config' is validated against ConfigStore",
                      r"\s*The strict flag in the compose API is deprecated")


@contextmanager
def _argv(args: List[str]):
    # fairseq's parser builders read sys.argv for --user-dir behind our back.
    saved = sys.argv
    sys.argv = [PROG] + args
    try:
        yield
    finally:
        sys.argv = saved


def _user_dir_candidates(value: str) -> List[str]:
    """Where fairseq's import_user_module looks for ``--user-dir value``, in its order."""
    import fairseq
    fairseq_dir = os.path.dirname(fairseq.__file__)
    return [os.path.abspath(value), os.path.join(fairseq_dir, value), os.path.join(fairseq_dir, "..", value)]


def without_our_user_dir(argv: List[str]) -> List[str]:
    """This command registers the running fairseq_tp itself.  A ``--user-dir`` that resolves to it is
    dropped; one that resolves to another directory would be ignored by fairseq (a package is imported
    once), so it is an error naming both."""
    import fairseq_tp
    ours = os.path.realpath(os.path.dirname(fairseq_tp.__file__))
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--user-dir" and i + 1 < len(argv):
            value, step = argv[i + 1], 2
        elif arg.startswith("--user-dir="):
            value, step = arg.split("=", 1)[1], 1
        else:
            out.append(arg)
            i += 1
            continue
        found = next((os.path.realpath(p) for p in _user_dir_candidates(value) if os.path.isdir(p)), None)
        # A bare "fairseq_tp" (the docs' fairseq-generate spelling) names this package wherever it is run.
        if found is None and os.path.normpath(value) != "fairseq_tp":
            raise UsageError(f"--user-dir {value}: no such directory")
        if found is not None and found != ours:
            raise UsageError(f"--user-dir {value} is {found}, but {PROG} runs the fairseq_tp in {ours}; "
                             f"run the {PROG} installed from {found}, or leave --user-dir out")
        i += step
    return out


def _parse(argv: List[str], with_search: bool):
    """fairseq-generate's parser for diffusion_translation (plus the search's options): (namespace, config)."""
    import fairseq_tp
    fairseq_tp.register()
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf, gen_parser_from_dataclass

    from .config import SearchConfig, required_options

    argv = without_our_user_dir(argv)
    with _argv(argv), warnings.catch_warnings():
        for message in HYDRA_DEPRECATIONS:  # fairseq 0.12's use of hydra, on every run: not the user's to fix
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        parser = options.get_generation_parser(default_task="diffusion_translation")
        parser.prog = PROG
        if with_search:
            parser.description = "Search a diffusion checkpoint's N-step decoding schedule against few-shot BLEU."
            group = parser.add_argument_group("schedule search")
            gen_parser_from_dataclass(group, SearchConfig())
            parser.set_defaults(gen_subset="valid")
        args = options.parse_args_and_arch(parser, input_args=argv)
        if with_search:  # argparse's own words for a required option
            missing = [flag for flag in required_options() if getattr(args, flag[2:].replace("-", "_")) is None]
            if missing:
                parser.error("the following arguments are required: " + ", ".join(missing))
        if args.task != "diffusion_translation":
            parser.error(f"--task must be diffusion_translation, got '{args.task}'")
        return args, convert_namespace_to_omegaconf(args)


def parse(argv: List[str]) -> Tuple[object, object]:
    """(fairseq generation config, SearchConfig) from a command line; nothing is checked against data yet."""
    from .config import SearchConfig

    args, cfg = _parse(argv, with_search=True)
    return cfg, SearchConfig.from_namespace(args)


def parse_generation(argv: List[str]):
    """The fairseq generation config alone (fairseq-generate's options for diffusion_translation)."""
    return _parse(argv, with_search=False)[1]


def main(argv: Optional[List[str]] = None) -> None:
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", datefmt="%Y-%m-%d %H:%M:%S",
                        level=os.environ.get("LOGLEVEL", "INFO").upper(), stream=sys.stderr,
                        force=True)  # one of fairseq's models sets the root logger to DEBUG when imported
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font search logs hundreds of DEBUG lines
    from . import distributed
    try:
        cfg, search = parse(sys.argv[1:] if argv is None else list(argv))
        if distributed.world() > 1:
            import torch
            distributed.start(search.process_group_timeout, torch.cuda.is_available() and not cfg.common.cpu)
        from .tune import tune
        report = tune(cfg, search)
    except UsageError as e:
        if distributed.world() > 1:
            distributed.fail(PROG, e.message)
        raise SystemExit(f"{PROG}: error: {e.message}") from None
    except KeyboardInterrupt:
        # Every trial and confirmation line is fsync'd when written: the log stays valid.
        print(f"{PROG}: error: interrupted; finished evaluations are in the trial log (continue with --resume)",
              file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as e:  # under torchrun, name the rank that failed and why
        if distributed.world() > 1:
            distributed.fail(PROG, f"{type(e).__name__}: {e}")
        raise
    finally:
        distributed.stop()
    if report is not None:
        print("\n".join(summary_lines(report)))


def summary_lines(report) -> List[str]:
    """The lines the command prints for a finished search (a SearchReport)."""
    result = report.result
    proposals = result.proposal_optimiser_s
    median = f", median {statistics.median(proposals):.3f} s per proposed schedule" if proposals else ""
    record = report.record
    lines = [
        f"{result.evaluations} schedules evaluated ({record['strategy']}, stopped by {result.stopped_by}) "
        f"on {len(record['shot_ids'])} sentences of '{record['subset']}' (shots: {record['shots']}) "
        f"in {result.elapsed_s:.1f} s this run; all trials: decoding + BLEU {result.objective_s:.1f} s, "
        f"optimiser {result.optimiser_s:.1f} s{median}",
        f"each schedule scored over {record['replicates']} noise draw(s) ({record['replicates_why']})",
        f"uniform  {str(result.baseline_schedule):>24}  BLEU {result.baseline_bleu:6.2f}",
        f"searched {str(result.best_schedule):>24}  BLEU {result.best_bleu:6.2f}  ({result.improvement:+.2f}) "
        f"on the shots",
    ]
    if report.guard is not None:
        guard = report.guard
        verdict = ("kept uniform" if guard["kept_uniform"] else "kept the searched schedule")
        lines.append(f"out-of-bag bootstrap of the shots: the pick beat uniform on left-out shots in "
                     f"{guard['confidence']:.1%} of {guard['resamples']} resamples (mean gain "
                     f"{guard['mean_left_out_gain']:+.2f}; --min-confidence {guard['min_confidence']}): {verdict}")
    confirmation = report.confirmation
    if confirmation is not None and "skipped" in confirmation:
        lines.append(f"confirmation skipped: {confirmation['skipped']}")
    elif confirmation is not None:
        lines.append(f"confirmation on {len(confirmation['sentence_ids'])} other sentences of '{record['subset']}' "
                     f"({confirmation['seconds']:.1f} s): uniform and the best {len(confirmation['candidates']) - 1}")
        for i, c in enumerate(confirmation["candidates"]):
            mark = "  <- written" if i == confirmation["chosen"] else ""
            lines.append(f"  {str(Schedule(tuple(c['timesteps']), c['num_timesteps'], c.get('rates'))):>40}  "
                         f"few-shot {c['few_shot_bleu']:6.2f}  confirm {c['bleu']:6.2f}{mark}")
        low, high = confirmation["left_out_gain_interval"]
        lines.append(f"  {'kept uniform' if confirmation['kept_uniform'] else 'chose the confirmed pick'}: "
                     f"{confirmation['why']}; left-out gain {confirmation['mean_left_out_gain']:+.2f} "
                     f"[{low:+.2f}, {high:+.2f}]")
    if report.front is not None:
        front = report.front
        where = "the confirmation sentences" if front.measured_on == "confirmation" else "the shots"
        lines.append(f"front over N (what each N writes; BLEU and shares on {where}, all "
                     f"{front.reference_schedule.steps} steps there: {front.reference_bleu:.2f}; target "
                     f"{front.target:.0%}):")
        for p in front.points:
            mark = "  <- chosen" if p is front.chosen else ""
            lines.append(f"  N = {p.steps:<3} {str(p.schedule):>24}  BLEU {p.bleu:6.2f} ({p.share:.1%})  "
                         f"uniform {p.uniform_bleu:6.2f} ({p.uniform_share:.1%}){mark}")
        if not front.target_met:
            lines.append(f"  no N reached {front.target:.0%} of the all-steps BLEU: wrote the best share")
    if report.evaluation:
        subset = report.record["eval"]["subset"]
        for name, row in report.evaluation.items():
            lines.append(f"{subset}: {name:8} {','.join(map(str, row['timesteps'])):>24}  BLEU {row['bleu']:6.2f}  "
                         f"{row['sents_per_s']:.1f} sentences/s")
    lines.append(f"wrote {report.output} (trial log {report.log})")
    return lines


if __name__ == "__main__":
    main()
