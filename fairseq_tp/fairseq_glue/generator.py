"""The diffusion generator fairseq-generate drives: one encoder pass and length
prediction, then one decoder pass per schedule step.

Several schedules can be decoded in one batch (the search does): rows are
stacked schedule-major and each schedule's rows draw from their own RNG.
The diffusion process owns the decoding state (tokens, and for continuous
models the embedding-space x_t) and the reverse step; this loop only feeds
the decoder.  With ``--mbr-samples K`` every sentence is decoded K times
(adjacent rows, different noise) and the minimum-Bayes-risk sample is kept.

``adaptive`` is RDM's decoding without ``--iter-decode-force-max-iter``: a sentence stops after
pass i once i + 1 >= its number of words, and multinomial families space each sentence's steps
uniformly over min(words, K) passes (RDM's per-sentence step sizes).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from ..diffusion import DecodingOptions, RandomSource
from ..diffusion.decoding import pass_rates, rdm_uniform_step
from ..errors import UsageError
from ..schedules import Schedule


@dataclass
class Encoded:
    """Encoder output and target lengths for a batch, already expanded for the length beam."""

    encoder_out: Dict[str, List[torch.Tensor]]
    lengths: torch.Tensor  # [B * beam]
    batch_size: int
    beam: int


class DiffusionGenerator:
    def __init__(self, tgt_dict, schedule: Schedule, options: DecodingOptions, beam_size: int = 1,
                 retain_history: bool = False, beam_within_length: int = 1, return_all_cands: bool = False,
                 adaptive: bool = False):
        if beam_size < 1:
            raise UsageError(f"--iter-decode-with-beam must be at least 1, got {beam_size}")
        self.beam_within_length = beam_within_length
        self.return_all_cands = return_all_cands
        self.adaptive = adaptive
        self.tgt_dict = tgt_dict
        self.pad = tgt_dict.pad()
        self.eos = tgt_dict.eos()
        self.schedule = schedule
        self.options = options
        self.beam_size = beam_size
        self.retain_history = retain_history

    @property
    def symbols_to_strip_from_output(self):
        return {self.tgt_dict.bos(), self.eos}

    @torch.no_grad()
    def generate(self, models, sample, prefix_tokens=None, constraints=None, rng: Optional[RandomSource] = None):
        if constraints is not None or prefix_tokens is not None:
            raise NotImplementedError("diffusion decoding supports neither constraints nor prefixes")
        model = models[0]
        if model.training:
            model.eval()
        net_input = sample["net_input"]
        encoded = self.encode(model, net_input["src_tokens"], net_input["src_lengths"])
        return self.decode(model, encoded, [self.schedule], rng or RandomSource())[0]

    @torch.no_grad()
    def encode(self, model, src_tokens, src_lengths) -> Encoded:
        encoder_out, lengths = model.encode_source(src_tokens, src_lengths)
        batch_size, beam = src_tokens.size(0), self.beam_size * self.beam_within_length
        if beam > 1:
            # RDM's order per sentence: the length beam, repeated --beam-within-length times.
            offsets = torch.arange(self.beam_size, device=lengths.device) - self.beam_size // 2
            lengths = (lengths[:, None] + offsets[None, :]).repeat(1, self.beam_within_length)
            lengths = lengths.view(-1).clamp(min=3)
            order = torch.arange(batch_size, device=lengths.device).repeat_interleave(beam)
            encoder_out = model.select_encoder_rows(encoder_out, order)
        return Encoded(encoder_out, lengths, batch_size, beam)

    @torch.no_grad()
    def decode(self, model, encoded: Encoded, schedules: Sequence[Schedule], rng: RandomSource):
        """Hypotheses per schedule: ``[schedule][sentence] -> [hypo]`` (fairseq's format)."""
        steps = {s.steps for s in schedules}
        if len(steps) != 1:
            raise ValueError("schedules decoded together must have the same number of steps")
        diffusion = model.diffusion
        samples = self.options.mbr_samples
        groups, rows = len(schedules), encoded.lengths.size(0) * samples  # rows per schedule
        encoder_out = encoded.encoder_out
        lengths = encoded.lengths
        device = lengths.device
        if groups > 1 or samples > 1:
            order = torch.arange(encoded.lengths.size(0), device=device)
            order = order.repeat_interleave(samples).repeat(groups)
            encoder_out = model.select_encoder_rows(encoder_out, order)
            lengths = lengths[order]
        # Every row's timestep and target for every pass, built once: [rows * groups, passes].
        timesteps = torch.tensor([s.timesteps for s in schedules], device=device).repeat_interleave(rows, dim=0)
        targets = torch.tensor([s.targets() for s in schedules], device=device).repeat_interleave(rows, dim=0)
        rates = self._rates(schedules, targets[::rows], diffusion.num_timesteps).repeat_interleave(rows, dim=0)

        state = diffusion.initial_state(lengths, int(lengths.max()), rng)
        history = [state.tokens.clone()] if self.retain_history else None
        passes = steps.pop()
        cache = {}  # the encoder attention's keys and values, computed on the first pass
        if self.adaptive:
            if groups > 1 or rng.generators:
                raise ValueError("adaptive decoding decodes one schedule with fairseq's global RNG")
            state, passes_per_row = self._decode_adaptive(model, encoder_out, state, timesteps, targets, passes,
                                                          history, rng, cache)
            return [self._finalize(state, history, 0, rows, encoded, passes_per_row)]
        for i in range(passes):
            t, s = timesteps[:, i], targets[:, i]
            # Logits for discrete models, an X0Prediction for continuous ones (x_t is state.x).
            output = model.denoise(state.tokens, encoder_out, t, x_t=state.x, cross_attention_cache=cache)
            state = diffusion.reverse_step(state, output, t, s, rates[:, i], self.options.for_pass(i, passes), rng)
            if history is not None:
                history.append(diffusion.visible_tokens(state).clone())
        return [self._finalize(state, history, g * rows, rows, encoded, [passes] * (rows * groups))
                for g in range(groups)]

    def _decode_adaptive(self, model, encoder_out, state, timesteps, targets, passes, history, rng, cache):
        """RDM's early stop; returns the final state and each row's number of passes."""
        diffusion = model.diffusion
        rows = state.tokens.size(0)
        active = torch.ones(rows, dtype=torch.bool, device=state.tokens.device)
        # Rates depend on the row only through its target under --denoising-rate timestep (whose multinomial
        # step sizes differ per sentence here); otherwise one value per pass, computed once.
        per_pass = self._rates([self.schedule], targets[:1], diffusion.num_timesteps)[0]
        per_row = self.options.rate_from == "timestep" and self.schedule.rates is None
        done_after = [passes] * rows
        for i in range(passes):
            index = active.nonzero().squeeze(1)
            part = state.rows(index)
            if diffusion.adaptive_step_sizes:
                words = diffusion.non_special(part.tokens).sum(1)
                t, s = rdm_uniform_step(i, words.clamp(max=passes).clamp(min=1), diffusion.num_timesteps)
            else:
                t, s = timesteps[index, i], targets[index, i]
            rate = (pass_rates(self.options.reparam, None, "timestep", s[:, None], diffusion.num_timesteps)[:, 0]
                    if per_row else per_pass[i].expand(len(index)))
            # Until the first sentence stops, every row is active: no need to copy the encoder output,
            # and the encoder attention's cache still holds for it.
            if len(index) == rows:
                encoder_rows = encoder_out
            else:
                encoder_rows, cache = model.select_encoder_rows(encoder_out, index), None
            output = model.denoise(part.tokens, encoder_rows, t, cross_attention_cache=cache)
            part = diffusion.reverse_step(part, output, t, s, rate, self.options.for_pass(i, passes), rng)
            state = state.with_rows(index, part)
            if history is not None:
                history.append(state.tokens.clone())
            finished = i + 1 >= diffusion.non_special(part.tokens).sum(1)  # RDM counts the words after the pass
            if i + 1 == passes:
                finished = torch.ones_like(finished)
            for row in index[finished].tolist():
                done_after[row] = i + 1
            active[index[finished]] = False
            if not active.any():
                break
        return state, done_after

    def _rates(self, schedules: Sequence[Schedule], targets: torch.Tensor, num_timesteps: int) -> torch.Tensor:
        """[schedules, passes]: the share left noisy after each pass, row g for schedule g (targets [g, passes])."""
        strategy = self.options.reparam
        return torch.cat([pass_rates(strategy, schedule.rates, self.options.rate_from, targets[g:g + 1], num_timesteps)
                          for g, schedule in enumerate(schedules)])

    def _finalize(self, state, history, start, rows, encoded: Encoded, passes: List[int]):
        """``passes[row]``: the decoder passes row ``row`` ran (its history has one state more)."""
        hypos = []
        tokens, scores = state.tokens[start:start + rows], state.scores[start:start + rows]
        keep = tokens.ne(self.pad)
        lengths = keep.sum(1)
        # Pads trail every row unless a noise token is one (multinomial families): slice when they trail.
        trailing = bool(keep.cumprod(1).sum(1).eq(lengths).all())
        lengths = lengths.tolist()
        for index, row in enumerate(range(start, start + rows)):
            if trailing:
                row_tokens, row_scores = tokens[index, :lengths[index]], scores[index, :lengths[index]]
            else:
                row_tokens, row_scores = tokens[index][keep[index]], scores[index][keep[index]]
            hypo = {
                "steps": passes[row],
                "tokens": row_tokens,
                "positional_scores": row_scores,
                "score": row_scores.mean(),
                "hypo_attn": None,
                "alignment": None,
            }
            if history is not None:
                hypo["history"] = [{"tokens": h[row][h[row].ne(self.pad)]} for h in history[:passes[row] + 1]]
            hypos.append(hypo)
        per_sentence = encoded.beam * self.options.mbr_samples
        if per_sentence == 1:
            return [[h] for h in hypos]
        if self.return_all_cands:
            return [hypos[i * per_sentence:(i + 1) * per_sentence] for i in range(encoded.batch_size)]
        best = []
        for i in range(encoded.batch_size):
            candidates = hypos[i * per_sentence:(i + 1) * per_sentence]
            if self.options.mbr_samples > 1:
                top = mbr_choice([self._text(h["tokens"]) for h in candidates])
            else:  # length beam: keep the best-scoring length (first on ties, as RDM)
                top = max(range(per_sentence), key=lambda j: (float(candidates[j]["score"]), -j))
            best.append([candidates[top]])
        return best

    def _text(self, tokens: torch.Tensor) -> str:
        return self.tgt_dict.string(tokens.cpu(), extra_symbols_to_ignore=self.symbols_to_strip_from_output)


def mbr_choice(texts: Sequence[str]) -> int:
    """Index of the candidate with the highest mean sentence-BLEU against the others
    (sacrebleu's sentence_bleu on token strings); the first wins ties.

    DiffuSeq's MBR ranks by the same sum, with NLTK's smoothed sentence BLEU.
    """
    from sacrebleu import sentence_bleu

    n = len(texts)
    if n == 1:
        return 0
    gains = [sum(sentence_bleu(texts[i], [texts[j]]).score for j in range(n) if j != i) / (n - 1)
             for i in range(n)]
    return max(range(n), key=lambda i: (gains[i], -i))
