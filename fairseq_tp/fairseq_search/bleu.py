"""Corpus BLEU as the search scores it, in the two forms people report.

* ``sacrebleu``: what ``fairseq-generate --scoring sacrebleu`` prints --
  detokenised hypotheses (``D-`` lines) against the references (``T-``).
* ``tokenized``: fairseq's ``scripts/compound_split_bleu.sh``, the tokenized
  BLEU4 the RDM and Temporal Pruning papers report -- ``H-`` lines against
  ``T-`` lines, hyphenated compounds split into ``a ##AT##-##AT## b``, then
  fairseq's BLEU on whitespace tokens (as ``fairseq-score``).

Both score from integer sufficient statistics (hypothesis and reference lengths, n-gram matches and
totals) summed over sentences, so that shares of a corpus scored apart (e.g. on several ranks) and
summed give exactly the corpus score.
"""
import logging
import re
from dataclasses import dataclass
from typing import Optional, List, Sequence

import sacrebleu

BLEU_KINDS = ("sacrebleu", "tokenized")
_COMPOUND = re.compile(r"(\S)-(\S)")


@dataclass(frozen=True)
class Translation:
    """One sentence as fairseq-generate prints it."""

    sentence_id: int
    hypothesis: str  # H- line: BPE removed per --post-process, not detokenised
    detokenized: str  # D- line: also through --tokenizer/--bpe decoding
    reference: str  # T- line


def compound_split(line: str) -> str:
    # Non-overlapping, left to right, as perl's s{(\S)-(\S)}{$1 ##AT##-##AT## $2}g.
    return _COMPOUND.sub(r"\1 ##AT##-##AT## \2", line)


class _EachMessageOnce(logging.Filter):
    def __init__(self):
        super().__init__()
        self._seen = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self._seen:
            return False
        self._seen.add(message)
        return True


# sacreBLEU warns about tokenised text on every corpus it scores, and a search scores hundreds: say it once.
_SACREBLEU_WARNINGS_ONCE = _EachMessageOnce()


class SacreBleu:
    name = "sacrebleu"

    def __init__(self, tokenize: Optional[str] = None, lowercase: bool = False):
        """``tokenize``: sacreBLEU's tokenizer (default its 13a; "none" for text tokenized already)."""
        logging.getLogger("sacrebleu").addFilter(_SACREBLEU_WARNINGS_ONCE)  # a no-op once added
        self._metric = sacrebleu.metrics.BLEU(tokenize=tokenize, lowercase=lowercase)
        self._metric.corpus_score(["."], [["."]])  # the signature names the reference count only once known

    @property
    def signature(self) -> str:
        return str(self._metric.get_signature())

    def score(self, translations: Sequence[Translation]) -> float:
        return self.from_statistics(self.statistics(translations))

    def statistics(self, translations: Sequence[Translation]) -> List[int]:
        """[hyp length, ref length, matches 1-4, totals 1-4] summed over the sentences (sacreBLEU's own)."""
        if not translations:
            return [0] * 10
        score = self._metric.corpus_score([self.hypothesis_of(t) for t in translations],
                                          [[self.reference_of(t) for t in translations]])
        return [int(n) for n in (score.sys_len, score.ref_len, *score.counts, *score.totals)]

    def hypothesis_of(self, translation: Translation) -> str:
        """The text scored as the hypothesis (a subclass may score another form of it)."""
        return translation.detokenized

    def reference_of(self, translation: Translation) -> str:
        return translation.reference

    def corpus(self, hypotheses: Sequence[str], references: Sequence[str]) -> float:
        """BLEU of plain texts, one reference each."""
        return float(self._metric.corpus_score(list(hypotheses), [list(references)]).score)

    def from_statistics(self, stats: Sequence[int]) -> float:
        metric, order = self._metric, self._metric.max_ngram_order
        return float(metric.compute_bleu(
            correct=list(stats[2:2 + order]), total=list(stats[2 + order:]), sys_len=int(stats[0]),
            ref_len=int(stats[1]), smooth_method=metric.smooth_method, smooth_value=metric.smooth_value,
            effective_order=metric.effective_order, max_ngram_order=order).score)


class TokenizedBleu:
    name = "tokenized"
    signature = "tokenized"

    def score(self, translations: Sequence[Translation]) -> float:
        return self.from_statistics(self.statistics(translations))

    def statistics(self, translations: Sequence[Translation]) -> List[int]:
        """fairseq's BleuStat fields (reflen, predlen, match/count 1-4) summed over the sentences."""
        vocab, scorer = _fairseq_scorer()
        for t in translations:
            reference = vocab.encode_line(compound_split(t.reference), add_if_not_exist=True)
            hypothesis = vocab.encode_line(compound_split(t.hypothesis), add_if_not_exist=True)
            scorer.add(reference, hypothesis)
        return [int(getattr(scorer.stat, name)) for name, _ in scorer.stat._fields_]

    def from_statistics(self, stats: Sequence[int]) -> float:
        _, scorer = _fairseq_scorer()
        for (name, _), value in zip(scorer.stat._fields_, stats):
            setattr(scorer.stat, name, value)
        return float(scorer.score())


def _fairseq_scorer():
    from fairseq.data import Dictionary
    from fairseq.scoring.bleu import BleuConfig, Scorer

    vocab = Dictionary()
    return vocab, Scorer(BleuConfig(pad=vocab.pad(), eos=vocab.eos(), unk=vocab.unk()))


def build_bleu(kind: str):
    """The scorer named by ``--bleu`` (one of BLEU_KINDS: the search config's ChoiceEnum checks it)."""
    return {"sacrebleu": SacreBleu, "tokenized": TokenizedBleu}[str(kind)]()
