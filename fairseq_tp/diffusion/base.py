"""What every diffusion process shares (special symbols, time sampling for
training, the sentence frame the predicted length gives, the decoding state),
and what the discrete ones share: the reverse step from timestep t to any earlier s.

Timesteps are 0-based (t in [0, T)); the target ``s = -1`` means x0.
Families override only where their math differs.
"""
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UsageError
from .decoding import DecodeState, DecodingOptions, RandomSource, argmax_log_prob, pick_tokens, reparam_route


def mean_in_float(x: torch.Tensor, dim=None) -> torch.Tensor:
    return (x.float().mean() if dim is None else x.float().mean(dim)).type_as(x)


class DiffusionProcess(nn.Module):
    """The part every family shares, discrete or continuous."""

    continuous = False  # True: the decoder takes and predicts embedding-space vectors

    def __init__(self, num_timesteps: int, vocab_size: int, pad: int, bos: int, eos: int, mask: int):
        super().__init__()
        self.num_timesteps = num_timesteps
        self.vocab_size = vocab_size
        self.pad, self.bos, self.eos, self.mask = pad, bos, eos, mask

    def non_special(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.ne(self.pad) & tokens.ne(self.bos) & tokens.ne(self.eos)

    def sample_time(self, batch_size: int, device) -> Tuple[torch.Tensor, torch.Tensor]:
        """Uniform t with its importance weight 1/p(t) = T (RDM's uniform sampler)."""
        t = torch.randint(0, self.num_timesteps, (batch_size,), device=device)
        return t, torch.full((batch_size,), float(self.num_timesteps), device=device)

    def _frame(self, body: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """<bos> body <eos> for each row's length (bos + words + eos), pad beyond."""
        positions = torch.arange(body.size(1), device=body.device)[None, :]
        tokens = body.masked_fill(positions >= lengths[:, None], self.pad)
        tokens[:, 0] = self.bos
        return tokens.scatter(1, (lengths - 1)[:, None], self.eos)

    def network_time_at_decoding(self, t: torch.Tensor) -> torch.Tensor:
        """The time value the network sees when denoising x_t (RDM's convention per family)."""
        return t

    def initial_state(self, lengths: torch.Tensor, max_length: int, rng: RandomSource) -> DecodeState:
        raise NotImplementedError

    def check_decoding(self, options: DecodingOptions) -> None:
        """ValueError (one line) for decoding options this family cannot honour."""

    def decodes_deterministically(self, options: DecodingOptions) -> bool:
        """Whether decoding with ``options`` draws no random numbers (then one noise draw says all)."""
        return False

    def visible_tokens(self, state: DecodeState) -> torch.Tensor:
        """The tokens an intermediate state stands for (``--retain-iter-history``)."""
        return state.tokens


class DiscreteDiffusion(DiffusionProcess):
    # RDM counts the step its default reverse step works with from 1 for absorbing models and from 0
    # for multinomial ones; --decoding-time-difference shifts that number, so the offset matters.
    rdm_step_offset = 0
    # RDM's adaptive decoding re-spaces each sentence's steps (uniform over min(words, K) passes)
    # for the multinomial families only; absorbing ones just stop early.
    adaptive_step_sizes = False
    # Multinomial families keep pad/bos/eos where they are (their x0 distribution there is one-hot).
    keeps_special_positions = False

    # -- training -----------------------------------------------------------
    def corrupt(self, x0: torch.Tensor, t: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Draw x_t ~ q(x_t | x0); returns at least ``x_t`` plus what :meth:`loss` needs."""
        raise NotImplementedError

    def corrupt_coupled(self, x0: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor):
        """RDM's ``--q-sample-mode coupled``: (corrupted, t) for the batch twice, first at
        hi = max(t1, t2) from q(x_hi | x0), then at lo = min(t1, t2) from q(x_lo | x_hi, x0)
        (an independent draw from q(x_lo | x0) where hi = lo)."""
        raise NotImplementedError

    def loss(self, logits, x0, corrupted, t, weight, label_smoothing: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """(loss, nll) for network outputs ``logits`` [B, L, V] on ``corrupted``."""
        raise NotImplementedError

    # -- decoding -----------------------------------------------------------
    def initial_tokens(self, lengths: torch.Tensor, max_length: int, rng: RandomSource) -> torch.Tensor:
        """x_{T-1} for target ``lengths`` (bos + words + eos), padded to ``max_length``."""
        raise NotImplementedError

    def initial_state(self, lengths, max_length, rng):
        tokens = self.initial_tokens(lengths, max_length, rng)
        return DecodeState(tokens, torch.zeros(tokens.shape, device=tokens.device), self.non_special(tokens))

    def check_decoding(self, options):
        if not options.continuous_defaults:
            raise UsageError("--continuous-sampler, --ddim-eta and --clamp-to-embeddings apply only to "
                             "--diffusion-type continuous models; this one is discrete")

    def exclude_from_x0_(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` with the tokens x0 cannot be set to their stand-in for log 0, in place."""
        return logits

    def x0_log_probs(self, logits: torch.Tensor, tokens: torch.Tensor, non_special: torch.Tensor) -> torch.Tensor:
        """log p(x0 | x_t) [B, L, V] from the network's logits (overwritten)."""
        log_probs = torch.log_softmax(self.exclude_from_x0_(logits), dim=-1)
        if self.keeps_special_positions:
            return torch.where(non_special.unsqueeze(-1), log_probs, one_hot_log(tokens, self.vocab_size))
        return log_probs

    def x0_choice(self, logits, tokens, non_special, options: DecodingOptions, rng: RandomSource):
        """(scores, tokens) [B, L]: each position's x0 token, argmax or sampled, and its log-probability.
        Overwrites ``logits`` (the decoder's fresh output, read nowhere else)."""
        if not options.argmax:  # Gumbel-max sampling reads the whole distribution
            return pick_tokens(self.x0_log_probs(logits, tokens, non_special), options, rng)
        scores, chosen = argmax_log_prob(self.exclude_from_x0_(logits))
        if self.keeps_special_positions:
            return scores.masked_fill(~non_special, 0.0), torch.where(non_special, chosen, tokens)
        return scores, chosen

    def noise_tokens(self, tokens: torch.Tensor, t: torch.Tensor, s: torch.Tensor, rng: RandomSource) -> torch.Tensor:
        """What a position routed back to noise at s becomes (reparameterised decoding)."""
        raise NotImplementedError

    def default_step(self, state, logits, t, s, non_special, options, rng) -> DecodeState:
        """The family's own reverse step x_t -> x_s (``--decoding-strategy default``); overwrites ``logits``."""
        raise NotImplementedError

    def reverse_step(
        self,
        state: DecodeState,
        logits: torch.Tensor,
        t: torch.Tensor,
        s: torch.Tensor,
        rate: torch.Tensor,
        options: DecodingOptions,
        rng: RandomSource,
    ) -> DecodeState:
        """Move every row from its timestep ``t`` [B] to its target ``s`` [B] (s = -1: x0).

        ``rate`` [B] (float64) is the share of tokens the reparameterised strategies leave noisy
        after this pass (see :func:`pass_rates`); ``default`` does not read it.  ``logits`` are
        consumed (overwritten in place).
        """
        non_special = self.non_special(state.tokens)
        strategy = options.reparam
        if strategy is None:
            t, s = self.shifted_times(t, s, options.time_difference)
            return self.default_step(state, logits, t, s, non_special, options, rng)
        cur_scores, cur_tokens = self.x0_choice(logits, state.tokens, non_special, options, rng)
        noise = self.noise_tokens(state.tokens, t, s, rng)
        return reparam_route(state, cur_scores, cur_tokens, noise, non_special, rate, strategy, rng)

    def shifted_times(self, t: torch.Tensor, s: torch.Tensor, difference: int):
        """``--decoding-time-difference D`` (Bit Diffusion's asymmetric interval), for any schedule:
        the reverse step from t to s keeps its size h = t - s but starts from a smaller time,
        RDM's step number n (t + rdm_step_offset) becoming max(n - D, floor(1.5 h)), capped at T - 1;
        the last step (s = -1) is unchanged.  Only the posterior moves; the network still sees t.
        For uniform:K, h is RDM's step size, so this is RDM's arithmetic."""
        if not difference:
            return t, s
        h = t - s
        offset = self.rdm_step_offset
        moved = torch.maximum(t + offset - difference, torch.div(3 * h, 2, rounding_mode="floor")) - offset
        moved = moved.clamp(max=self.num_timesteps - 1)
        t_new = torch.where(s >= 0, moved, t)
        return t_new, t_new - h


def mean_log_prob_over_vocabulary(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[B, L] mean over the vocabulary of log p(x0 = v | x_t) at ``positions``, 0 elsewhere:
    the pull towards uniform that label smoothing adds (RDM's form)."""
    return F.log_softmax(logits, dim=-1).mean(-1).masked_fill(~positions, 0.0)


def smoothed(nll: torch.Tensor, uniform_term: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """RDM's label-smoothed loss: (1 - eps) nll - eps * mean log-probability over the vocabulary."""
    return nll * (1 - label_smoothing) - uniform_term * label_smoothing


def one_hot_log(tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    return torch.log(F.one_hot(tokens, vocab_size).float().clamp(min=1e-30))


def cross_entropy_per_position(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    return F.cross_entropy(logits.transpose(1, 2), target, ignore_index=ignore_index, reduction="none")
