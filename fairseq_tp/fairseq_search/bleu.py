"""Corpus BLEU as the search scores it, in the two forms people report.

* ``sacrebleu``: what ``fairseq-generate --scoring sacrebleu`` prints --
  detokenised hypotheses (``D-`` lines) against the references (``T-``).
* ``tokenized``: fairseq's ``scripts/compound_split_bleu.sh``, the tokenized
  BLEU4 the RDM and Temporal Pruning papers report -- ``H-`` lines against
  ``T-`` lines, hyphenated compounds split into ``a ##AT##-##AT## b``, then
  fairseq's BLEU on whitespace tokens (as ``fairseq-score``).
"""
import re
from dataclasses import dataclass
from typing import Sequence

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


class SacreBleu:
    name = "sacrebleu"

    def __init__(self):
        self._metric = sacrebleu.metrics.BLEU()
        self._metric.corpus_score(["."], [["."]])  # the signature names the reference count only once known

    @property
    def signature(self) -> str:
        return str(self._metric.get_signature())

    def score(self, translations: Sequence[Translation]) -> float:
        hyps = [t.detokenized for t in translations]
        refs = [t.reference for t in translations]
        return float(self._metric.corpus_score(hyps, [refs]).score)


class TokenizedBleu:
    name = "tokenized"
    signature = "tokenized"

    def score(self, translations: Sequence[Translation]) -> float:
        from fairseq.data import Dictionary
        from fairseq.scoring.bleu import BleuConfig, Scorer

        vocab = Dictionary()
        scorer = Scorer(BleuConfig(pad=vocab.pad(), eos=vocab.eos(), unk=vocab.unk()))
        for t in translations:
            reference = vocab.encode_line(compound_split(t.reference), add_if_not_exist=True)
            hypothesis = vocab.encode_line(compound_split(t.hypothesis), add_if_not_exist=True)
            scorer.add(reference, hypothesis)
        return float(scorer.score())


def build_bleu(kind: str):
    """The scorer named by ``--bleu`` (already checked against BLEU_KINDS by the search config)."""
    return SacreBleu() if kind == "sacrebleu" else TokenizedBleu()
