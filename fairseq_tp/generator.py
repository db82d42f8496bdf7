"""The diffusion generator fairseq-generate drives: one encoder pass and length
prediction, then one decoder pass per schedule step.

Several schedules can be decoded in one batch (the search does): rows are
stacked schedule-major and each schedule's rows draw from their own RNG.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from .diffusion import DecodeState, DecodingOptions, RandomSource
from .schedule import Schedule


@dataclass
class Encoded:
    """Encoder output and target lengths for a batch, already expanded for the length beam."""

    encoder_out: Dict[str, List[torch.Tensor]]
    lengths: torch.Tensor  # [B * beam]
    batch_size: int
    beam: int


class DiffusionGenerator:
    def __init__(self, tgt_dict, schedule: Schedule, options: DecodingOptions, beam_size: int = 1,
                 retain_history: bool = False):
        if beam_size < 1:
            raise ValueError(f"--iter-decode-with-beam must be at least 1, got {beam_size}")
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
        model.eval()
        net_input = sample["net_input"]
        encoded = self.encode(model, net_input["src_tokens"], net_input["src_lengths"])
        return self.decode(model, encoded, [self.schedule], rng or RandomSource())[0]

    @torch.no_grad()
    def encode(self, model, src_tokens, src_lengths) -> Encoded:
        encoder_out = model.encoder(src_tokens, src_lengths=src_lengths)
        # <bos>, <eos> and at least one token, as RDM.
        lengths = model.decoder.predict_length(encoder_out).clamp(min=3)
        batch_size, beam = src_tokens.size(0), self.beam_size
        if beam > 1:
            offsets = torch.arange(beam, device=lengths.device) - beam // 2
            lengths = (lengths[:, None] + offsets[None, :]).view(-1).clamp(min=3)
            order = torch.arange(batch_size, device=lengths.device).repeat_interleave(beam)
            encoder_out = model.encoder.reorder_encoder_out(encoder_out, order)
        return Encoded(encoder_out, lengths, batch_size, beam)

    @torch.no_grad()
    def decode(self, model, encoded: Encoded, schedules: Sequence[Schedule], rng: RandomSource):
        """Hypotheses per schedule: ``[schedule][sentence] -> [hypo]`` (fairseq's format)."""
        steps = {s.steps for s in schedules}
        if len(steps) != 1:
            raise ValueError("schedules decoded together must have the same number of steps")
        diffusion = model.diffusion
        groups, rows = len(schedules), encoded.lengths.size(0)
        encoder_out = encoded.encoder_out
        lengths = encoded.lengths
        if groups > 1:
            encoder_out = model.encoder.reorder_encoder_out(
                encoder_out, torch.arange(rows, device=lengths.device).repeat(groups))
            lengths = lengths.repeat(groups)

        tokens = diffusion.initial_tokens(lengths, int(lengths.max()), rng)
        state = DecodeState(tokens, torch.zeros(tokens.shape, device=tokens.device), diffusion.non_special(tokens))
        history = [tokens.clone()] if self.retain_history else None
        passes = steps.pop()
        for i in range(passes):
            t = self._per_row([s.timesteps[i] for s in schedules], rows, tokens.device)
            s = self._per_row([s.targets()[i] for s in schedules], rows, tokens.device)
            progress = self._progress(i, passes, s, diffusion.num_timesteps)
            logits = model.decoder(state.tokens, encoder_out, diffusion.network_time_at_decoding(t))
            state = diffusion.reverse_step(state, logits, t, s, progress, self.options, rng)
            if history is not None:
                history.append(state.tokens.clone())
        return [self._finalize(state, history, g * rows, rows, encoded, passes) for g in range(groups)]

    def _per_row(self, values, rows, device):
        return torch.tensor(values, device=device).repeat_interleave(rows)

    def _progress(self, index, passes, s, num_timesteps):
        """How far decoding is after this pass; drives the reparameterised denoising rate."""
        if self.options.rate_from == "timestep":
            return 1 - (s.double() + 1) / num_timesteps
        return torch.full(s.shape, (index + 1) / passes, dtype=torch.float64, device=s.device)

    def _finalize(self, state, history, start, rows, encoded: Encoded, passes):
        hypos = []
        for row in range(start, start + rows):
            keep = state.tokens[row].ne(self.pad)
            scores = state.scores[row][keep]
            hypo = {
                "steps": passes,
                "tokens": state.tokens[row][keep],
                "positional_scores": scores,
                "score": scores.mean(),
                "hypo_attn": None,
                "alignment": None,
            }
            if history is not None:
                hypo["history"] = [{"tokens": h[row][h[row].ne(self.pad)]} for h in history]
            hypos.append(hypo)
        beam = encoded.beam
        if beam == 1:
            return [[h] for h in hypos]
        # Length beam: keep the best-scoring length per sentence (first on ties, as RDM).
        best = []
        for i in range(encoded.batch_size):
            candidates = hypos[i * beam:(i + 1) * beam]
            top = max(range(beam), key=lambda j: (float(candidates[j]["score"]), -j))
            best.append([candidates[top]])
        return best
