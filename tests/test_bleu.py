"""The search's sacreBLEU scorer (public API: corpus_score, compute_bleu) against sacreBLEU's own corpus
score and its per-sentence statistics."""
import random

import pytest
import sacrebleu

from fairseq_tp.fairseq_search.bleu import SacreBleu, Translation

WORDS = "the a of and to in he said unto them lord god , . ; ! it".split()


def translations(count, seed):
    rng = random.Random(seed)
    sentence = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))  # noqa: E731
    return [Translation(i, "", sentence(), sentence()) for i in range(count)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_statistics_and_scores_are_sacrebleus(seed):
    corpus, scorer = translations(40, seed), SacreBleu()
    hyps, refs = [t.detokenized for t in corpus], [t.reference for t in corpus]
    metric = sacrebleu.metrics.BLEU()
    # sacreBLEU's per-sentence statistics (private; the scorer reads the public BLEUScore fields instead)
    per_sentence = metric._extract_corpus_statistics(hyps, [refs])
    assert scorer.statistics(corpus) == [int(sum(column)) for column in zip(*per_sentence)]
    assert [scorer.statistics([t]) for t in corpus] == [[int(n) for n in row] for row in per_sentence]
    assert scorer.score(corpus) == sacrebleu.corpus_bleu(hyps, [refs]).score
    # shares scored apart and summed give the corpus score exactly (the ranks' all-reduce)
    halves = [scorer.statistics(corpus[:17]), scorer.statistics(corpus[17:])]
    assert scorer.from_statistics([a + b for a, b in zip(*halves)]) == scorer.score(corpus)


def test_empty_share_counts_nothing():
    assert SacreBleu().statistics([]) == [0] * 10


def test_sacrebleus_tokenised_text_warning_comes_once_per_process(caplog):
    tokenised = [Translation(i, "", "he said unto them .", "he said to them .") for i in range(120)]
    scorer = SacreBleu()
    with caplog.at_level("WARNING", logger="sacrebleu"):
        for _ in range(3):  # three evaluations of a search
            scorer.score(tokenised)
        SacreBleu().score(tokenised)
    assert [r.getMessage() for r in caplog.records if r.name == "sacrebleu"] == [
        "That's 100 lines that end in a tokenized period ('.')",
        "It looks like you forgot to detokenize your test data, which may hurt your score.",
        "If you insist your data is detokenized, or don't care, you can suppress this message with the `force` "
        "parameter."]
