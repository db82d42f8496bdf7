"""Multinomial (uniform-noise) diffusion and its reparameterised variant.

q(x_t | x0) = abar_t * onehot(x0) + (1 - abar_t) * noise, over the non-special
tokens; abar comes from a named schedule.  The reverse jump t -> s uses the
process's exact posterior, with s = -1 meaning x0.  Buffer names follow RDM's
so its checkpoints load unchanged.
"""
import math

import torch

from ..errors import UsageError
from .absorbing import check_reweighting, reweight
from .base import (DiscreteDiffusion, cross_entropy_per_position, mean_in_float, mean_log_prob_over_vocabulary,
                   one_hot_log, smoothed)
from .decoding import DecodeState, apply_routing, pick_tokens, sample_categorical
from .noise import log1mexp, log_alpha_bar, log_sub_exp

DECODER_LOSS_TYPES = ("orig", "simple")
NOISE_DISTRIBUTIONS = ("uniform", "unigram")

SPECIAL_LOG_PROB = -30.0  # RDM's stand-in for log 0 on pad/bos/eos
SPECIALS_REQUIRED = ("--diffusion-type multinomial needs --not-diffusing-special-sym in training (RDM asserts "
                     "it: diffusing pad/bos/eos ruins vanilla multinomial models)")


class MultinomialDiffusion(DiscreteDiffusion):
    adaptive_step_sizes = True
    keeps_special_positions = True
    # RDM asserts --not-diffusing-special-sym for vanilla multinomial training; the reparameterised
    # variant trains without it too, noising pad/bos/eos.

    def __init__(self, num_timesteps, vocab_size, pad, bos, eos, mask,
                 noise_scheduler_type="cosine", decoder_loss_type="orig", lambda_direct_xentropy=-1.0,
                 not_diffusing_special_sym=True):
        super().__init__(num_timesteps, vocab_size, pad, bos, eos, mask)
        # Read only in training (as RDM); vanilla multinomial requires it there (RDM asserts it).
        self.not_diffusing_special_sym = not_diffusing_special_sym
        if decoder_loss_type not in DECODER_LOSS_TYPES:
            raise UsageError(f"unknown --decoder-loss-type '{decoder_loss_type}' (choose from {', '.join(DECODER_LOSS_TYPES)})")
        self.decoder_loss_type = decoder_loss_type
        self.lambda_direct_xentropy = lambda_direct_xentropy
        log_abar = log_alpha_bar(num_timesteps, noise_scheduler_type)
        log_alpha = torch.diff(log_abar, prepend=torch.zeros(1, dtype=log_abar.dtype))
        self.register_buffer("log_alpha", log_alpha.float())
        self.register_buffer("log_1_min_alpha", torch.log(1 - log_alpha.exp() + 1e-9).float())
        self.register_buffer("log_cumprod_alpha", log_abar.float())
        self.register_buffer("log_1_min_cumprod_alpha", torch.log(1 - log_abar.exp() + 1e-9).float())
        self.special_ids = [pad, bos, eos]
        self.register_noise()

    def register_noise(self):
        # Uniform over the V - 3 non-special ids.  As in RDM, the vector itself
        # also covers pad/bos/eos, which the marginals then push to -30.
        noise = torch.full((self.vocab_size,), -math.log(self.vocab_size - 3))
        self.register_buffer("noise_log_prob", noise, persistent=False)

    # -- process ------------------------------------------------------------
    def log_abar(self, t: torch.Tensor) -> torch.Tensor:
        """log abar_t per row as [B, 1, 1]; abar_{-1} = 1 (x0 itself)."""
        values = self.log_cumprod_alpha.gather(0, t.clamp(min=0))
        return torch.where(t < 0, torch.zeros_like(values), values).view(-1, 1, 1)

    def _restrict(self, log_probs, log_keep, non_special):
        log_probs = log_probs.clone()
        log_probs[..., self.special_ids] = SPECIAL_LOG_PROB
        return torch.where(non_special.unsqueeze(-1), log_probs, log_keep)

    def marginal(self, log_x0, t, non_special):
        """log q(x_t | x0) [B, L, V]; special positions keep x0."""
        log_1m = self.log_1_min_cumprod_alpha.gather(0, t).view(-1, 1, 1)
        log_probs = torch.logaddexp(log_x0 + self.log_abar(t), log_1m + self.noise_log_prob)
        return self._restrict(log_probs, log_x0, non_special)

    def noise_posterior(self, log_xt, t, s):
        """Unnormalised log q(x_s | x_t) for a position that is noise at both t and s."""
        log_keep = self.log_abar(t) - self.log_abar(s)
        return torch.logaddexp(log_xt + log_keep, log1mexp(log_keep) + self.noise_log_prob)

    def transition(self, log_xt, t, s, non_special):
        """log q(x_t | x_s) as a function of x_s (uniform noise makes it symmetric)."""
        log_keep = self.log_abar(t) - self.log_abar(s)
        log_probs = torch.logaddexp(log_xt + log_keep, torch.log1p(-torch.exp(log_keep)) + self.noise_log_prob)
        return self._restrict(log_probs, log_xt, non_special)

    def posterior(self, log_x0, log_xt, t, s, non_special):
        """log q(x_s | x_t, x0), x0 possibly a distribution (Hoogeboom et al.'s parameterisation)."""
        log_marginal_s = self.marginal(log_x0, s.clamp(min=0), non_special)
        to_x0 = (s < 0).view(-1, 1, 1)
        if self.decoder_loss_type == "orig":
            unnormed = torch.where(to_x0, log_x0, log_marginal_s) + self.transition(log_xt, t, s, non_special)
        else:
            unnormed = torch.where(to_x0, log_x0, log_marginal_s + self.transition(log_xt, t, s, non_special))
        return torch.log_softmax(unnormed, dim=-1)

    def noise_probs(self) -> torch.Tensor:
        """The noise distribution tokens are drawn from, pad/bos/eos at 0 (RDM gives them log-prob -30)."""
        return self.noise_log_prob.exp().index_fill(0, torch.tensor(self.special_ids, device=self.noise_log_prob.device), 0.0)

    def _draw_noise(self, like: torch.Tensor) -> torch.Tensor:
        return torch.multinomial(self.noise_probs(), like.numel(), replacement=True).view_as(like)

    def _protected(self, x0):
        """Positions that keep x0 whatever t is: pad/bos/eos with --not-diffusing-special-sym.
        Without it RDM noises them too, and as x0 itself then has log-prob -30, they always
        become a noise token."""
        special = ~self.non_special(x0)
        return special if self.not_diffusing_special_sym else torch.zeros_like(special)

    def corrupt(self, x0, t):
        """Draws x_t ~ q(x_t | x0) as "keep x0 with probability abar_t, else a noise token": the
        same law as ``marginal`` without its [B, L, V] tensors, which cost more than the network.
        (Vanilla multinomial trains only with not_diffusing_special_sym, as RDM asserts:
        ``training.check_training_options`` refuses it before training starts.)"""
        keep = torch.rand(x0.shape, device=x0.device) < self.log_abar(t).view(-1, 1).exp()
        keep = (keep & self.non_special(x0)) | self._protected(x0)
        return {"x_t": torch.where(keep, x0, self._draw_noise(x0))}

    def sample_posterior(self, x0, x_t, t, s):
        """x_s ~ q(x_s | x_t, x0) for 0 <= s < t, drawn as the mixture the exact posterior is
        (noise n, a = abar_t / abar_s): (a - abar_t) [x_s = x_t] + (abar_s - abar_t) [x_s = x0]
        + (1 - a)(1 - abar_s) n(x_s), with abar_t / n(x0) more on x0 where x_t = x0.  x0 = pad/bos/eos
        (log-prob -30 in RDM) gets no weight; protected positions keep x0."""
        abar_t, abar_s = self.log_abar(t).view(-1, 1).double().exp(), self.log_abar(s).view(-1, 1).double().exp()
        a = abar_t / abar_s
        n0 = self.noise_probs().double()[x0]
        special = ~self.non_special(x0)
        same = x_t.eq(x0)
        w_xt = (a - abar_t).expand_as(n0)
        w_x0 = (abar_s - abar_t) + torch.where(same, abar_t / n0.clamp(min=1e-300), torch.zeros_like(n0))
        w_x0 = w_x0.masked_fill(special, 0.0)
        w_noise = ((1 - a) * (1 - abar_s)).expand_as(n0)
        u = torch.rand(x0.shape, device=x0.device, dtype=torch.float64) * (w_xt + w_x0 + w_noise)
        drawn = torch.where(u < w_xt, x_t, torch.where(u < w_xt + w_x0, x0, self._draw_noise(x0)))
        return torch.where(self._protected(x0), x0, drawn)

    def corrupt_coupled(self, x0, t1, t2):
        hi, lo = torch.maximum(t1, t2), torch.minimum(t1, t2)
        x_hi = self.corrupt(x0, hi)["x_t"]
        x_lo = torch.where((hi == lo).unsqueeze(-1), self.corrupt(x0, lo)["x_t"], self.sample_posterior(x0, x_hi, hi, lo))
        return {"x_t": torch.cat([x_hi, x_lo])}, torch.cat([hi, lo])

    # -- training loss ------------------------------------------------------
    def loss(self, logits, x0, corrupted, t, weight, label_smoothing):
        non_special = self.non_special(x0)
        log_x0 = one_hot_log(x0, self.vocab_size)
        log_x_t = one_hot_log(corrupted["x_t"], self.vocab_size)
        log_recon = torch.where(non_special.unsqueeze(-1), torch.log_softmax(logits, -1), log_x0)
        s = t - 1
        log_q = self.posterior(log_x0, log_x_t, t, s, non_special)
        log_p = self.posterior(log_recon, log_x_t, t, s, non_special)
        kl = (log_q.exp() * (log_q - log_p)).sum(-1).mean(-1)
        decoder_nll = -(log_x0.exp() * log_p).sum(-1).mean(-1)
        per_sentence = torch.where(t == 0, decoder_nll, kl) * weight
        if self.lambda_direct_xentropy > 0:
            direct = cross_entropy_per_position(log_recon, x0).mean(1) * weight
            per_sentence = per_sentence + self.lambda_direct_xentropy * direct
        nll = mean_in_float(per_sentence)
        if label_smoothing > 0:
            # Vanilla multinomial (RDM): averaged over the non-special positions, unweighted.
            uniform_term = mean_log_prob_over_vocabulary(logits, non_special).sum() / non_special.sum()
            return smoothed(nll, uniform_term.type_as(nll), label_smoothing), nll
        return nll, nll

    # -- decoding -----------------------------------------------------------
    def initial_tokens(self, lengths, max_length, rng):
        # RDM draws from the whole vocabulary, specials included; kept for parity.
        u = rng.uniform((lengths.size(0), max_length), lengths.device)
        body = (u * self.vocab_size).long().clamp(max=self.vocab_size - 1)
        return self._frame(body, lengths)

    def noise_tokens(self, tokens, t, s, rng):
        return sample_categorical(self.noise_posterior(one_hot_log(tokens, self.vocab_size), t, s), rng)

    def default_step(self, state, logits, t, s, non_special, options, rng):
        # The exact posterior mixes the whole x0 distribution: no shortcut here.
        log_x0 = self.x0_log_probs(logits, state.tokens, non_special)
        log_xt = one_hot_log(state.tokens, self.vocab_size)
        scores, tokens = pick_tokens(self.posterior(log_x0, log_xt, t, s, non_special), options, rng)
        return DecodeState(tokens, scores, state.noisy)


class ReparamMultinomialDiffusion(MultinomialDiffusion):
    """RDM's reparameterisation: x_t is x0 or noise, routed by Bernoulli variables.

    Differs from vanilla multinomial in the noise distribution (uniform or
    unigram, sharpened at temperature 1.5), the loss (cross-entropy on the
    noisy positions), the default reverse step (route each noisy position to
    x0 with probability (abar_s - abar_t) / (1 - abar_t)) and the start tokens.
    """


    def __init__(self, num_timesteps, vocab_size, pad, bos, eos, mask,
                 noise_scheduler_type="cosine", reweighting_type="linear",
                 noise_distribution="uniform", vocab_count=None, not_diffusing_special_sym=False):
        check_reweighting(reweighting_type)
        if noise_distribution not in NOISE_DISTRIBUTIONS:
            raise UsageError(f"unknown --noise-distribution '{noise_distribution}' "
                             f"(choose from {', '.join(NOISE_DISTRIBUTIONS)})")
        if noise_distribution == "unigram" and vocab_count is None:
            raise UsageError("--noise-distribution unigram needs the dictionary's counts")
        self.reweighting_type = reweighting_type
        self._noise_weights = (torch.tensor(vocab_count, dtype=torch.float) if noise_distribution == "unigram"
                               else torch.ones(vocab_size))
        super().__init__(num_timesteps, vocab_size, pad, bos, eos, mask, noise_scheduler_type,
                         not_diffusing_special_sym=not_diffusing_special_sym)

    def register_noise(self):
        weights = self._noise_weights.clone()
        weights[self.special_ids] = 0
        self.register_buffer("vocab_log_prob", torch.log_softmax(torch.log(weights.clamp(min=1e-30)) / 1.5, dim=-1))
        indicator = torch.zeros(self.vocab_size)
        indicator[self.special_ids] = 1
        self.register_buffer("special_sym_indicator", indicator)

    @property
    def noise_log_prob(self):
        return self.vocab_log_prob

    def route_to_x0_log_prob(self, t, s):
        """log (abar_s - abar_t) / (1 - abar_t): chance a noisy token is x0 again at s."""
        log_abar_t, log_abar_s = self.log_abar(t), self.log_abar(s)
        return log_sub_exp(log_abar_s, log_abar_t) - log1mexp(log_abar_t)

    def loss(self, logits, x0, corrupted, t, weight, label_smoothing):
        clean = corrupted["x_t"].eq(x0)
        masked_logits = logits.masked_fill(self.special_sym_indicator.bool(), SPECIAL_LOG_PROB)
        # With --not-diffusing-special-sym special positions are clean and add nothing; without it
        # (RDM) they are noise whose target, pad/bos/eos, the network can only give log-prob ~-30.
        per_position = cross_entropy_per_position(masked_logits, x0)
        per_sentence = per_position.masked_fill(clean | self._protected(x0), 0.0).mean(1)
        nll = mean_in_float(weight * reweight(self.reweighting_type, t, self.num_timesteps) * per_sentence)
        if label_smoothing > 0:
            uniform_term = mean_in_float(weight * mean_log_prob_over_vocabulary(logits, ~clean).mean(1))
            return smoothed(nll, uniform_term, label_smoothing), nll
        return nll, nll

    def initial_tokens(self, lengths, max_length, rng):
        rows = lengths.size(0)
        scores = self.vocab_log_prob.unsqueeze(0) + rng.gumbel((rows, self.vocab_size), lengths.device)
        if max_length <= self.vocab_size:
            # Distinct noise tokens in random order, as RDM starts.
            chosen = scores.topk(max_length, dim=-1)[1]
            order = rng.uniform(chosen.shape, lengths.device).argsort(-1)
            body = chosen.gather(-1, order)
        else:
            noise = self.vocab_log_prob.expand(rows, max_length, -1)
            body = (noise + rng.gumbel(noise.shape, lengths.device)).argmax(-1)
        return self._frame(body, lengths)

    def exclude_from_x0_(self, logits):
        logits[..., self.special_ids] = SPECIAL_LOG_PROB
        return logits

    def default_step(self, state, logits, t, s, non_special, options, rng):
        cur_scores, cur_tokens = self.x0_choice(logits, state.tokens, non_special, options, rng)
        u = rng.uniform(state.tokens.shape, state.tokens.device)
        stays_noise = ~(torch.log(u.clamp(min=1e-30)) < self.route_to_x0_log_prob(t, s).view(-1, 1))
        noise = self.noise_tokens(state.tokens, t, s, rng)
        to_noise = state.noisy & stays_noise
        return apply_routing(state, to_noise, state.noisy & ~stays_noise, noise, cur_tokens, cur_scores, to_noise)
