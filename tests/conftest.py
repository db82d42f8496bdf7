"""Shared fixtures: tiny generated data and tiny models trained once per session."""
import os
import random
import subprocess
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
# CI sets this so that a missing fixture fails instead of skipping (.ci/run).
REQUIRE_FIXTURES = os.environ.get("FAIRSEQ_TP_REQUIRE_FIXTURES") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "fixture_dir(name): needs ../shared/fixtures/NAME beside the checkout")


def pytest_runtest_setup(item):
    for marker in item.iter_markers("fixture_dir"):
        folder = FIXTURES / marker.args[0]
        if not folder.is_dir():
            message = f"needs the test fixture folder {folder} (../shared/fixtures, not part of a clone)"
            if REQUIRE_FIXTURES:
                pytest.fail(message + "; FAIRSEQ_TP_REQUIRE_FIXTURES=1 makes it required", pytrace=False)
            pytest.skip(message)
PLUGIN_DIR = str(REPO / "fairseq_tp")
DIFFUSION_TYPES = ("absorbing", "multinomial", "reparam-absorbing", "reparam-multinomial")


def fairseq_main(kind: str, argv):
    """Run fairseq-preprocess/-train/-generate in this process (saves ~4 s of imports each)."""
    import fairseq_tp
    fairseq_tp.register()
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import generate, preprocess, train

    if kind == "preprocess":
        return preprocess.main(options.get_preprocessing_parser().parse_args(argv))
    parser = options.get_training_parser() if kind == "train" else options.get_generation_parser()
    # No data-loading worker process: shutting one down waits up to 5 s in torch's join (measured: most of
    # an in-process fairseq-generate's wall time).  A later --num-workers in argv still wins.
    argv = [*argv[:1], "--num-workers", "0", *argv[1:]]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, input_args=argv))
    return (train.main if kind == "train" else generate.main)(cfg)


def one_line(error) -> str:
    """What fairseq's command lines print for an uncaught UsageError (the plugin's excepthook)."""
    from fairseq_tp.errors import PREFIX
    return PREFIX + error.message


def run_cli(args, cwd=None, env=None, input=None):
    """A fairseq CLI as a subprocess (for exit codes and stderr); ``input``: its standard input."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, input=input)


def write_reversal_data(directory, counts, seed=3):
    """The tests' toy task: reverse a sentence of 3-9 made-up words from a 20-word vocabulary, seeded."""
    rng = random.Random(seed)
    vocab = [a + b for a in ("ka", "lo", "mi", "re", "tu") for b in ("sa", "ne", "po", "di")]
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), counts):
        sources = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 9))) for _ in range(n)]
        (directory / f"{split}.src").write_text("".join(s + "\n" for s in sources))
        (directory / f"{split}.tgt").write_text("".join(" ".join(reversed(s.split())) + "\n" for s in sources))


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    write_reversal_data(root / "raw", counts=(300, 24, 20))
    raw = root / "raw"
    fairseq_main("preprocess", [
        "--source-lang", "src", "--target-lang", "tgt", "--trainpref", str(raw / "train"),
        "--validpref", str(raw / "valid"), "--testpref", str(raw / "test"), "--joined-dictionary",
        "--destdir", str(root / "bin"), "--workers", "1"])
    return root


TINY_MODEL = [
    "--arch", "diffusion_transformer", "--encoder-layers", "1", "--decoder-layers", "1",
    "--encoder-embed-dim", "32", "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
    "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
    "--share-all-embeddings", "--encoder-learned-pos", "--decoder-learned-pos",
]


@pytest.fixture(scope="session")
def checkpoints(toy_data, tmp_path_factory):
    """One tiny checkpoint per diffusion type, trained with fairseq-train for a few updates."""
    out = {}
    for kind in DIFFUSION_TYPES:
        save = tmp_path_factory.mktemp(kind)
        extra = ["--not-diffusing-special-sym"] if "multinomial" in kind else []
        fairseq_main("train", [
            str(toy_data / "bin"), "--user-dir", PLUGIN_DIR, "--task", "diffusion_translation",
            "--criterion", "diffusion_loss", *TINY_MODEL, "--diffusion-type", kind,
            "--num-diffusion-timesteps", "50", *extra, "--optimizer", "adam", "--lr", "0.001",
            "--max-update", "6", "--max-tokens", "1024", "--save-dir", str(save), "--no-epoch-checkpoints",
            "--cpu", "--seed", "1", "--store-ema", "--ema-decay", "0.9", "--no-progress-bar",
            "--eval-bleu", "--eval-bleu-args", '{"iter_decode_max_iter": 4}', "--log-format", "simple"])
        out[kind] = save / "checkpoint_last.pt"
    return out


def read_hypotheses(path: Path):
    """{sentence id: hypothesis text} from fairseq-generate's output."""
    hyps = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith("H-"):
            head, _score, text = (line.split("\t") + [""])[:3]
            hyps[int(head[2:])] = text
    return hyps


def generate(data_bin, checkpoint, results, *extra):
    fairseq_main("generate", [
        str(data_bin), "--user-dir", PLUGIN_DIR, "--task", "diffusion_translation", "--path", str(checkpoint),
        "--gen-subset", "test", "--cpu", "--results-path", str(results), *extra])
    return Path(results) / "generate-test.txt"
