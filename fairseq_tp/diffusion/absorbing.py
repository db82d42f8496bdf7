"""Absorbing (masking) diffusion and its reparameterised variant.

At timestep t (0-based) each token is masked with probability (t+1)/T.
The exact reverse jump t -> s unmasks a masked token with probability
(t-s)/(t+1); s = -1 unmasks everything.
"""
import math

import torch

from ..errors import UsageError
from .base import DiscreteDiffusion, cross_entropy_per_position, mean_in_float, mean_log_prob_over_vocabulary, smoothed
from .decoding import DecodeState

REWEIGHTING_TYPES = ("linear", "reciprocal", "none")


class AbsorbingDiffusion(DiscreteDiffusion):
    rdm_step_offset = 1  # RDM's absorbing step is t + 1

    def __init__(self, num_timesteps, vocab_size, pad, bos, eos, mask,
                 not_diffusing_special_sym=False, lambda_direct_xentropy=-1.0):
        super().__init__(num_timesteps, vocab_size, pad, bos, eos, mask)
        self.not_diffusing_special_sym = not_diffusing_special_sym
        self.lambda_direct_xentropy = lambda_direct_xentropy

    # -- forward process ----------------------------------------------------
    def mask_probability(self, t: torch.Tensor) -> torch.Tensor:
        return (t.double() + 1) / self.num_timesteps

    def unmask_probability(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """q(x_s = x0 | x_t = mask, x0)."""
        return (t - s).double() / (t.double() + 1)

    def corrupt(self, x0, t):
        masked = torch.rand(x0.shape, device=x0.device) < self.mask_probability(t).float().unsqueeze(-1)
        if self.not_diffusing_special_sym:
            masked &= self.non_special(x0)
        return {"x_t": x0.masked_fill(masked, self.mask), "masked": masked}

    def corrupt_coupled(self, x0, t1, t2):
        hi, lo = torch.maximum(t1, t2), torch.minimum(t1, t2)
        u1, u2 = torch.rand(x0.shape, device=x0.device), torch.rand(x0.shape, device=x0.device)
        masked_hi = u1 < self.mask_probability(hi).float().unsqueeze(-1)
        # Nested: a position masked at hi stays masked at lo unless q(x_lo | x_hi, x0) unmasks it,
        # with probability (hi - lo) / (hi + 1); at hi = lo an independent draw (as RDM).
        stays = u2 > self.unmask_probability(hi, lo).float().unsqueeze(-1)
        independent = u2 < self.mask_probability(lo).float().unsqueeze(-1)
        masked_lo = torch.where((hi == lo).unsqueeze(-1), independent, masked_hi & stays)
        masked = torch.cat([masked_hi, masked_lo])
        if self.not_diffusing_special_sym:
            masked &= self.non_special(x0).repeat(2, 1)
        return {"x_t": x0.repeat(2, 1).masked_fill(masked, self.mask), "masked": masked}, torch.cat([hi, lo])

    # -- training loss ------------------------------------------------------
    def reweighting(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 / (t.float() + 1)

    def loss(self, logits, x0, corrupted, t, weight, label_smoothing):
        masked = corrupted["masked"]
        # Averaged over all positions, as RDM does: unmasked ones add zero.
        nll_per_sentence = cross_entropy_per_position(logits, x0.masked_fill(~masked, -1), -1).mean(1)
        nll = mean_in_float(weight * self.reweighting(t) * nll_per_sentence)
        loss = nll
        if label_smoothing > 0:
            uniform_term = mean_in_float(weight * mean_log_prob_over_vocabulary(logits, masked).mean(1))
            loss = smoothed(nll, uniform_term, label_smoothing)
        if self.lambda_direct_xentropy > 0:
            direct = cross_entropy_per_position(logits, x0).mean(1)
            loss = loss + self.lambda_direct_xentropy * mean_in_float(weight * direct)
        return loss, nll

    # -- decoding -----------------------------------------------------------
    def network_time_at_decoding(self, t):
        # RDM trains with t but feeds t + 1 when decoding absorbing models; kept
        # so that its checkpoints decode as they do under RDM.
        return t + 1

    def initial_tokens(self, lengths, max_length, rng):
        body = torch.full((lengths.size(0), max_length), self.mask, dtype=torch.long, device=lengths.device)
        return self._frame(body, lengths)

    def exclude_from_x0_(self, logits):
        logits[..., self.mask] = -math.inf  # never predict the mask itself
        return logits

    def noise_tokens(self, tokens, t, s, rng):
        return torch.full_like(tokens, self.mask)

    def decodes_deterministically(self, options):
        # Starts from all masks; only the default step (where to unmask) and sampling draw noise.
        reparam = options.reparam
        return options.argmax and reparam is not None and reparam.noise_scale is None and options.mbr_samples == 1

    def default_step(self, state, logits, t, s, non_special, options, rng):
        scores, predicted = self.x0_choice(logits, state.tokens, non_special, options, rng)
        p_unmask = self.unmask_probability(t, s).to(scores.dtype).unsqueeze(1)
        unmask = (rng.uniform(state.tokens.shape, state.tokens.device) < p_unmask) & state.tokens.eq(self.mask)
        tokens = torch.where(unmask, predicted, state.tokens)
        return DecodeState(tokens, scores, tokens.eq(self.mask))


class ReparamAbsorbingDiffusion(AbsorbingDiffusion):
    """Same process and decoding; only the loss weighting differs (RDM's reweighting types)."""

    def __init__(self, num_timesteps, vocab_size, pad, bos, eos, mask,
                 not_diffusing_special_sym=False, reweighting_type="linear"):
        super().__init__(num_timesteps, vocab_size, pad, bos, eos, mask, not_diffusing_special_sym)
        self.reweighting_type = check_reweighting(reweighting_type)

    def reweighting(self, t):
        return reweight(self.reweighting_type, t, self.num_timesteps)


def check_reweighting(kind: str) -> str:
    if kind not in REWEIGHTING_TYPES:
        raise UsageError(f"unknown --reweighting-type '{kind}' (choose from {', '.join(REWEIGHTING_TYPES)})")
    return kind


def reweight(kind: str, t: torch.Tensor, num_timesteps: int) -> torch.Tensor:
    if kind == "reciprocal":
        return 1.0 / (t.float() + 1)
    if kind == "linear":
        return 1 - t.float() / num_timesteps
    return torch.ones_like(t, dtype=torch.float)
