"""--min-confidence: the out-of-bag bootstrap of picking the best schedule on the shots."""
import itertools
import json

import numpy as np
import pytest

from conftest import PLUGIN_DIR
from fairseq_tp.fairseq_search.cli import main as search_main
from fairseq_tp.search import selection_confidence


def precision(stats):
    """A corpus-level score that is not a sum over sentences: matches / total."""
    return stats[0] / max(1, stats[1])


def exact_selection_test(stats, score):
    """Every one of the n^n equally likely resamples, enumerated: (share ahead, mean left-out gain)."""
    n = stats.shape[1]
    ahead, gains = 0, []
    for draw in itertools.product(range(n), repeat=n):
        counts = np.bincount(draw, minlength=n)
        left_out = counts == 0
        if not left_out.any():
            continue

        def mean_score(weights, s):
            return np.mean([score(np.einsum("s,sk->k", weights, s[:, d])) for d in range(s.shape[1])])

        pick = max(range(len(stats)), key=lambda i: (mean_score(counts, stats[i]), -i))
        gain = mean_score(left_out.astype(int), stats[pick]) - mean_score(left_out.astype(int), stats[0])
        gains.append(gain)
        ahead += gain > 0
    return ahead / len(gains), float(np.mean(gains))


def test_monte_carlo_matches_all_resamples_enumerated():
    rng = np.random.default_rng(34)  # a case where picking the best is a coin flip
    totals = rng.integers(3, 9, size=(3, 4, 2, 1))  # 3 schedules, 4 sentences, 2 noise draws
    matches = rng.integers(0, 4, size=(3, 4, 2, 1))
    stats = np.concatenate([np.minimum(matches, totals), totals], axis=-1)
    exact_ahead, exact_gain = exact_selection_test(stats, precision)
    test = selection_confidence(stats, precision, samples=40000, seed=1)
    assert 0.3 < exact_ahead < 0.7
    assert test.ahead == pytest.approx(exact_ahead, abs=0.01)
    assert test.mean_gain == pytest.approx(exact_gain, abs=0.01)
    assert test.resamples < 40000  # resamples that drew every sentence are skipped (24 of 256)


def test_a_schedule_better_on_every_sentence_is_always_ahead_and_a_worse_one_never():
    base = np.array([[[2, 10]], [[3, 10]], [[1, 10]], [[4, 10]], [[2, 10]]])  # [sentences, draws, k]
    better, worse = base + [1, 0], base - [1, 0]
    assert selection_confidence(np.stack([base, better]), precision, samples=200).ahead == 1.0
    test = selection_confidence(np.stack([base, worse]), precision, samples=200)
    assert test.ahead == 0.0 and test.mean_gain == 0.0  # the baseline is always picked: no gain


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"expected \[schedules >= 2, sentences >= 2, draws, statistics\], "
                                         r"got shape \(1, 3, 1, 2\)"):
        selection_confidence(np.zeros((1, 3, 1, 2)), precision)


def test_sentence_statistics_sum_to_the_corpus_statistics_of_the_translations(toy_data, checkpoints):
    from fairseq_tp.fairseq_search.bleu import SacreBleu
    from fairseq_tp.fairseq_search.cli import parse
    from fairseq_tp.fairseq_search.loading import load_for_decoding
    from fairseq_tp.search import ScheduleSpace
    cfg, _ = parse([str(toy_data / "bin"), "--path", str(checkpoints["multinomial"]), "--steps", "3", "--cpu",
                    "--batch-size", "5"])
    loaded = load_for_decoding(cfg)
    valid = loaded.subset("valid", "--gen-subset")
    space = ScheduleSpace(50, 3)
    schedules = [space.baseline()] + space.initial_design(2, 0)
    cached = loaded.objective(valid, range(12), SacreBleu(), seed=1, schedules_per_batch=8, replicates=2,
                              keep_sentence_statistics=True)  # as tune() builds it under --min-confidence
    cached.evaluate(schedules)  # fills the per-sentence cache
    fresh = loaded.objective(valid, range(12), SacreBleu(), seed=1, schedules_per_batch=8, replicates=2)
    from_cache, decoded = cached.sentence_statistics(schedules), fresh.sentence_statistics(schedules)
    assert from_cache.shape == (3, 12, 2, 10) and (from_cache == decoded).all()
    # draw 0 summed over sentences: sacreBLEU's corpus statistics of the translations, taken independently
    for i, translations in enumerate(fresh.translate(schedules)):
        expected = SacreBleu().statistics(translations)
        assert from_cache[i, :, 0].sum(axis=0).tolist() == expected


def guarded_search(data, checkpoint, out_dir, minimum, *extra):
    output = out_dir / f"guard{minimum}.json"
    search_main([str(data), "--user-dir", PLUGIN_DIR, "--path", str(checkpoint), "--cpu", "--no-progress-bar",
                 "--steps", "3", "--shots", "12", "--budget", "8", "--seed", "2", "--output", str(output),
                 "--min-confidence", str(minimum), "--confirm-top", "0", *extra])
    return json.loads(output.read_text())


def test_guard_keeps_uniform_below_the_confidence_and_records_the_test(toy_data, checkpoints, tmp_path, capsys):
    args = (toy_data / "bin", checkpoints["multinomial"], tmp_path)
    plain = guarded_search(*args, 0.0)
    assert "confidence_test" not in plain and plain["timesteps"] != plain["uniform_timesteps"]
    low = guarded_search(*args, 0.01)
    high = guarded_search(*args, 0.99)
    test = low["confidence_test"]
    assert test == {**high["confidence_test"], "min_confidence": 0.01, "kept_uniform": test["kept_uniform"]}
    assert test["searched_timesteps"] == plain["timesteps"] and test["resamples"] <= 1000
    share = test["confidence"]
    assert 0.01 <= share < 0.99, share  # this search's pick is neither sure nor hopeless: both branches run
    assert (low["timesteps"], low["bleu"]) == (plain["timesteps"], plain["bleu"]) and not test["kept_uniform"]
    assert high["confidence_test"]["kept_uniform"]
    assert (high["timesteps"], high["bleu"]) == (high["uniform_timesteps"], high["uniform_bleu"])
    assert "kept uniform" in capsys.readouterr().out
    # a resumed search (no per-sentence cache: every trial decoded again) reaches the same test
    resumed = guarded_search(*args, 0.99, "--resume", "--log", str(tmp_path / "guard0.99.trials.jsonl"))
    assert resumed["confidence_test"] == high["confidence_test"]


@pytest.mark.parametrize("flags, message", [
    (["--min-confidence", "1"], "--min-confidence must be a share in [0, 1), got 1.0"),
    (["--min-confidence", "-0.1"], "--min-confidence must be a share in [0, 1), got -0.1"),
    (["--min-confidence", "0.8", "--steps", "2,3"], "--min-confidence tests one searched schedule; use one --steps"),
])
def test_bad_confidence_is_refused_before_loading(flags, message, toy_data, tmp_path):
    argv = [str(toy_data / "bin"), "--path", str(tmp_path / "missing.pt"), "--cpu", "--output",
            str(tmp_path / "s.json"), "--steps", "3", *flags]
    with pytest.raises(SystemExit) as exit_info:
        search_main(argv)
    assert str(exit_info.value.code) == f"fairseq-tp-search: error: {message}"
