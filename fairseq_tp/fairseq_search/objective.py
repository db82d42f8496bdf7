"""The search objective: corpus BLEU of a schedule on a few validation sentences.

The shots are encoded and their lengths predicted once; every evaluation
reuses that and only runs the decoder passes.  Candidate schedules decoded
together share a batch (stacked schedule-major), and every schedule draws its
decoding noise from a generator seeded the same way, so two schedules differ
only by their timesteps.  With ``replicates`` R > 1 a schedule's score is the
mean BLEU over R noise draws: draw r is the same for every schedule (common
random numbers) and differs between draws; draw 0 is the noise of R = 1.
Scores come from BLEU's integer statistics summed over the batches of shots,
so a process that decodes only some batches (``shard``: one rank of a
distributed search; batch b belongs to rank b mod world size, keeping its
global number and so its noise) contributes statistics that sum exactly.  Text goes through the same post-processing as
fairseq-generate's H-, D- and T- lines.
"""
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from fairseq import utils

from ..diffusion import RandomSource
from ..fairseq_glue.generator import DiffusionGenerator, Encoded
from ..schedules import Schedule
from ..search import derive_seed
from ..search.objective_api import Score
from .bleu import Translation


def draw_shots(subset_size: int, shots: Optional[int], seed: int) -> List[int]:
    """Sentence ids of ``shots`` sentences drawn with ``seed`` (all when None), ascending."""
    if shots is None or shots >= subset_size:
        return list(range(subset_size))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(subset_size, size=shots, replace=False))


def translation(tgt_dict, sample, row: int, hypo_tokens, strip, post_process, decode_fn) -> Translation:
    """Row ``row`` of ``sample`` as fairseq-generate prints it (H-, D-, T- lines), for any fairseq generator."""
    target = utils.strip_pad(sample["target"][row], tgt_dict.pad()).int().cpu()
    reference = tgt_dict.string(target, post_process, escape_unk=True, extra_symbols_to_ignore=strip)
    _, hypothesis, _ = utils.post_process_prediction(
        hypo_tokens=hypo_tokens.int().cpu(), src_str="", alignment=None, align_dict=None, tgt_dict=tgt_dict,
        remove_bpe=post_process, extra_symbols_to_ignore=strip)
    return Translation(int(sample["id"][row]), hypothesis, decode_fn(hypothesis), decode_fn(reference))


class FewShotBleu:
    """Implements :class:`fairseq_tp.search.Objective` for a fairseq diffusion model."""

    def __init__(self, model, generator: DiffusionGenerator, dataset, sentence_ids: Sequence[int], bleu, *,
                 seed: int, max_tokens: Optional[int], batch_size: Optional[int], schedules_per_batch: int,
                 replicates: int = 1, post_process: Optional[str] = None,
                 decode_fn: Callable[[str], str] = lambda x: x, use_cuda: bool = False,
                 shard: Tuple[int, int] = (0, 1), keep_sentence_statistics: bool = False):
        """``shard``: (rank, world size), which batches this process decodes in statistics().
        ``keep_sentence_statistics``: keep each shot's statistics for sentence_statistics() (the
        --min-confidence guard); it costs a scorer call a sentence."""
        self.model, self.generator, self.dataset, self.bleu = model, generator, dataset, bleu
        self.sentence_ids = list(sentence_ids)
        self.seed, self.schedules_per_batch, self.replicates = seed, schedules_per_batch, replicates
        self.post_process, self.decode_fn, self.use_cuda = post_process, decode_fn, use_cuda
        self.tgt_dict = generator.tgt_dict
        self.batches = self._batches(max_tokens, batch_size)
        self.shard, self.keep_sentence_statistics = shard, keep_sentence_statistics
        self._encoded: Dict[int, Tuple[dict, Encoded]] = {}
        self._sentence_stats: Dict[Tuple[Schedule, int], Dict[int, List[int]]] = {}  # (schedule, draw) -> id -> stats

    # -- the Objective protocol -------------------------------------------
    def evaluate(self, schedules: Sequence[Schedule]) -> List[Score]:
        """BLEU per schedule; with replicates, the list of each draw's BLEU (the search takes the mean)."""
        return self.scores(self.statistics(schedules))

    def statistics(self, schedules: Sequence[Schedule]) -> List[List[int]]:
        """BLEU statistics per (schedule, noise draw), schedule-major, over this shard's batches."""
        rank, world = self.shard
        mine = [b for b in range(len(self.batches)) if b % world == rank]
        runs = [(s, r) for s in schedules for r in range(self.replicates)]
        translated = self._translate_runs(runs, mine)
        if not self.keep_sentence_statistics:
            return [self.bleu.statistics(t) for t in translated]
        totals = []
        for run, translations in zip(runs, translated):
            per_sentence = {t.sentence_id: self.bleu.statistics([t]) for t in translations}
            self._sentence_stats.setdefault(run, {}).update(per_sentence)  # kept for sentence_statistics()
            totals.append([int(sum(column)) for column in zip(*per_sentence.values())] if per_sentence
                          else self.bleu.statistics([]))
        return totals

    def scores(self, statistics: Sequence[Sequence[int]]) -> List[Score]:
        scores = [self.bleu.from_statistics(s) for s in statistics]
        if self.replicates == 1:
            return scores
        return [scores[i:i + self.replicates] for i in range(0, len(scores), self.replicates)]

    def sentence_statistics(self, schedules: Sequence[Schedule]) -> np.ndarray:
        """BLEU statistics per schedule, sentence and noise draw: [schedules, sentences, draws, k], for the
        bootstrap over the shots: from what statistics() computed, decoding here what it did not (trials
        replayed on --resume, other ranks' shots)."""
        runs = [(s, r) for s in schedules for r in range(self.replicates)]
        missing = [run for run in runs if len(self._sentence_stats.get(run, ())) < len(self.sentence_ids)]
        for run, translations in zip(missing, self._translate_runs(missing)):  # resumed trials, other ranks' shots
            self._sentence_stats[run] = {t.sentence_id: self.bleu.statistics([t]) for t in translations}
        stats = np.array([[self._sentence_stats[run][i] for i in self.sentence_ids] for run in runs],
                         dtype=np.int64)  # [schedules x draws, sentences, k]
        stats = stats.reshape(len(schedules), self.replicates, *stats.shape[1:])
        return stats.transpose(0, 2, 1, 3)

    def shard_sentence_statistics(self, schedules: Sequence[Schedule]) -> Dict[Tuple[Schedule, int], Dict[int, List[int]]]:
        """Per (schedule, noise draw), the per-sentence statistics of this shard's batches (one rank's part)."""
        rank, world = self.shard
        mine = [b for b in range(len(self.batches)) if b % world == rank]
        runs = [(s, r) for s in schedules for r in range(self.replicates)]
        return {run: {t.sentence_id: self.bleu.statistics([t]) for t in translations}
                for run, translations in zip(runs, self._translate_runs(runs, mine))}

    def add_sentence_statistics(self, part: Dict[Tuple[Schedule, int], Dict[int, List[int]]]) -> None:
        """Keep another shard's per-sentence statistics, so that sentence_statistics() need not decode them."""
        for run, per_sentence in part.items():
            self._sentence_stats.setdefault(run, {}).update(per_sentence)

    # -- decoding ------------------------------------------------------------
    def translate(self, schedules: Sequence[Schedule]) -> List[List[Translation]]:
        """Per schedule, the shots' translations in sentence-id order (noise draw 0)."""
        return self._translate_runs([(s, 0) for s in schedules])

    def _translate_runs(self, runs: Sequence[Tuple[Schedule, int]], batch_numbers=None) -> List[List[Translation]]:
        """Per (schedule, noise draw), the translations of the shots in ``batch_numbers`` (default all),
        in sentence-id order."""
        out: List[Dict[int, Translation]] = [{} for _ in runs]
        batch_numbers = range(len(self.batches)) if batch_numbers is None else batch_numbers
        for chunk_start in range(0, len(runs), self.schedules_per_batch):
            chunk = list(runs[chunk_start:chunk_start + self.schedules_per_batch])
            for number in batch_numbers:
                sample, encoded = self._encode(number)
                noise = self._noise(number, [draw for _, draw in chunk])
                hypos = self.generator.decode(self.model, encoded, [s for s, _ in chunk], noise)
                for g, per_sentence in enumerate(hypos):
                    for row, sentence_hypos in enumerate(per_sentence):
                        translation = self._text(sample, row, sentence_hypos[0])
                        out[chunk_start + g][translation.sentence_id] = translation
        return [[by_id[i] for i in self.sentence_ids if i in by_id] for by_id in out]

    def timed(self, schedule: Schedule) -> Tuple[float, float]:
        """(BLEU, sentences/s) decoding from scratch, encoder included, as fairseq-generate would."""
        self._encoded.clear()
        self._sync()
        start = time.perf_counter()
        translations = self.translate([schedule])[0]
        self._sync()
        seconds = time.perf_counter() - start
        self._encoded.clear()
        return self.bleu.score(translations), len(translations) / seconds

    def _batches(self, max_tokens, batch_size) -> List[np.ndarray]:
        ids = np.array(self.sentence_ids, dtype=np.int64)
        # Similar lengths together, then ascending ids inside a batch (fairseq-generate's row order).
        ids = ids[np.argsort(self.dataset.src_sizes[ids], kind="stable")]
        batches = self.dataset.batch_by_size(ids, max_tokens=max_tokens, max_sentences=batch_size)
        return [np.sort(b) for b in batches]

    def _encode(self, number: int):
        if number not in self._encoded:
            sample = self.dataset.collater([self.dataset[int(i)] for i in self.batches[number]])
            if self.use_cuda:
                sample = utils.move_to_cuda(sample)
            net_input = sample["net_input"]
            with torch.no_grad():
                encoded = self.generator.encode(self.model, net_input["src_tokens"], net_input["src_lengths"])
            self._encoded[number] = (sample, encoded)
        return self._encoded[number]

    def _noise(self, batch_number: int, draws: Sequence[int]) -> RandomSource:
        """One generator per decoded group, seeded by (seed, batch of shots, noise draw) only."""
        device = "cuda" if self.use_cuda else "cpu"
        seeds = [derive_seed(self.seed, batch_number, "decoding" if d == 0 else f"decoding-{d}") for d in draws]
        return RandomSource([torch.Generator(device=device).manual_seed(seed) for seed in seeds])

    def _text(self, sample, row: int, hypo) -> Translation:
        return translation(self.tgt_dict, sample, row, hypo["tokens"], self.generator.symbols_to_strip_from_output,
                           self.post_process, self.decode_fn)

    def _sync(self):
        if self.use_cuda:
            torch.cuda.synchronize()
