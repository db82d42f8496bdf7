"""``fairseq-tp-search``: fairseq-generate's options plus the search's own.

    fairseq-tp-search data-bin/x --path ckpt.pt --steps 4 --shots 20 --budget 40 --output schedule.json
    fairseq-generate data-bin/x --user-dir fairseq_tp --task diffusion_translation --path ckpt.pt \\
        --tp-schedule schedule.json
"""
import argparse
import logging
import os
import sys
from contextlib import contextmanager
from typing import List, Optional, Tuple

from .errors import UsageError

PROG = "fairseq-tp-search"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _shots(text: str) -> Optional[int]:
    return None if text == "all" else _positive_int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_search_args(parser) -> None:
    from .bleu import BLEU_KINDS
    from .search import STRATEGIES

    group = parser.add_argument_group("schedule search")
    group.add_argument("--steps", type=_positive_int, required=True, metavar="N",
                       help="decoder passes of the schedule to find (N < T)")
    group.add_argument("--shots", type=_shots, default=20, metavar="K|all",
                       help="validation sentences to score BLEU on, drawn with --seed from --gen-subset (default 20)")
    group.add_argument("--budget", type=_positive_int, default=40, metavar="EVALS",
                       help="schedules to evaluate, the uniform baseline and initial design included (default 40)")
    group.add_argument("--time-budget", type=_positive_float, default=None, metavar="SECONDS",
                       help="also stop after this many seconds (after the evaluation in flight)")
    group.add_argument("--strategy", choices=STRATEGIES, default="botorch",
                       help="Bayesian optimisation or random search at the same budget (default botorch)")
    group.add_argument("--free-first-step", action="store_true",
                       help="search the first step too (default: fixed at T-1, the fully noised state)")
    group.add_argument("--n-init", type=int, default=None, metavar="K",
                       help="size of the space-filling initial design (default 2 x free steps)")
    group.add_argument("--bleu", choices=BLEU_KINDS, default="sacrebleu",
                       help="sacrebleu (detokenised, as --scoring sacrebleu) or tokenized "
                            "(fairseq's compound_split_bleu.sh, as the papers report)")
    group.add_argument("--schedules-per-batch", type=_positive_int, default=8, metavar="S",
                       help="candidate schedules decoded together in one batch (default 8)")
    group.add_argument("--output", default="schedule.json", metavar="FILE",
                       help="schedule file for fairseq-generate --tp-schedule (default schedule.json)")
    group.add_argument("--log", default=None, metavar="FILE",
                       help="trial log, one JSON line per evaluation (default: OUTPUT with .trials.jsonl)")
    group.add_argument("--resume", action="store_true", help="continue the search recorded in --log")
    group.add_argument("--plot", default=None, metavar="FILE.png", help="plot BLEU and steps per trial")
    group.add_argument("--eval-subset", default=None, metavar="SPLIT",
                       help="afterwards decode all of SPLIT with the uniform and the searched schedule")


@contextmanager
def _argv(args: List[str]):
    # fairseq's parser builders read sys.argv for --user-dir behind our back.
    saved = sys.argv
    sys.argv = [PROG] + args
    try:
        yield
    finally:
        sys.argv = saved


def _without_our_user_dir(argv: List[str]) -> List[str]:
    """This CLI registers fairseq_tp itself; drop ``--user-dir .../fairseq_tp`` so a bare
    name works from any directory (fairseq resolves it against the cwd)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        value = None
        if arg == "--user-dir" and i + 1 < len(argv):
            value, step = argv[i + 1], 2
        elif arg.startswith("--user-dir="):
            value, step = arg.split("=", 1)[1], 1
        if value is not None and os.path.basename(os.path.normpath(value)) == "fairseq_tp":
            i += step
            continue
        out.append(arg)
        i += 1
    return out


def parse(argv: List[str]) -> Tuple[object, object]:
    """(fairseq config, SearchOptions) from a command line."""
    import fairseq_tp
    fairseq_tp.register()
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    from .tune import SearchOptions

    argv = _without_our_user_dir(argv)
    with _argv(argv):
        parser = options.get_generation_parser(default_task="diffusion_translation")
        parser.prog = PROG
        parser.description = "Search a diffusion checkpoint's N-step decoding schedule against few-shot BLEU."
        add_search_args(parser)
        parser.set_defaults(gen_subset="valid")
        args = options.parse_args_and_arch(parser, input_args=argv)
    if args.task != "diffusion_translation":
        parser.error(f"--task must be diffusion_translation, got '{args.task}'")
    search = SearchOptions(
        steps=args.steps, shots=args.shots, budget=args.budget, time_budget_s=args.time_budget,
        strategy=args.strategy, free_first_step=args.free_first_step, n_init=args.n_init, bleu=args.bleu,
        schedules_per_batch=args.schedules_per_batch, output=args.output, log=args.log, resume=args.resume,
        plot=args.plot, eval_subset=args.eval_subset, progress=not args.no_progress_bar)
    return convert_namespace_to_omegaconf(args), search


def main(argv: Optional[List[str]] = None) -> None:
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", datefmt="%Y-%m-%d %H:%M:%S",
                        level=os.environ.get("LOGLEVEL", "INFO").upper(), stream=sys.stderr)
    try:
        cfg, search = parse(sys.argv[1:] if argv is None else list(argv))
        from .tune import summary_lines, tune
        report = tune(cfg, search)
    except UsageError as e:
        raise SystemExit(f"{PROG}: error: {e.message}") from None
    print("\n".join(summary_lines(report)))


if __name__ == "__main__":
    main()
