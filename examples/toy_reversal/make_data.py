"""Generate a toy translation task: reverse the order of made-up words.

Usage: python make_data.py OUT_DIR [--seed 3] [--train 6000 --valid 200 --test 200]
"""
import argparse
import random
from pathlib import Path


def write_reversal_data(directory, seed=3, counts=(6000, 200, 200), words=20):
    rng = random.Random(seed)
    vocab = [a + b for a in ("ka", "lo", "mi", "re", "tu", "fa", "be", "gu", "zo", "vi", "ru", "he")
             for b in ("sa", "ne", "po", "di")][:words]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), counts):
        src = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 9))) for _ in range(n)]
        (directory / f"{split}.src").write_text("".join(s + "\n" for s in src))
        (directory / f"{split}.tgt").write_text("".join(" ".join(reversed(s.split())) + "\n" for s in src))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--words", type=int, default=20)
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--valid", type=int, default=200)
    parser.add_argument("--test", type=int, default=200)
    a = parser.parse_args()
    write_reversal_data(a.out, a.seed, (a.train, a.valid, a.test), a.words)
