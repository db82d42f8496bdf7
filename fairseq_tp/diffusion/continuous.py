"""Continuous Gaussian diffusion over token embeddings (DiffuSeq, Gong et al., ICLR 2023).

The target sentence is embedded, x0 = EMB(w) + sqrt(1 - abar_0) * noise, and
diffused with q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I).  Only the
target is noised; the source conditions the denoiser through the encoder
(DiffuSeq's partial noising, with the source in an encoder rather than in the
same sequence).  The network predicts x0 in embedding space; tokens come from
rounding, logits = x0_hat @ E^T, E being the embedding matrix the decoder's
output projection is tied to.

Noise schedule: DiffuSeq's ``sqrt``, abar(u) = 1 - sqrt(u + 1e-4) with each
step's beta clipped at 0.999, is ``noise.log_alpha_bar(T, "sqrt")`` -- the same
grid, ratios and clipping (the multinomial models' ``sqrt``), so it is reused.

Loss per sentence, each term averaged over the target's non-pad positions (as
DiffuSeq's ``training_losses_seq2seq``):

- mse:   ||x0_hat - x0||^2, with EMB(w) itself as the target at t = 0;
- round: -log p(w | x0) of the *sampled* x0 through the tied projection
  (DiffuSeq's ``decoder_nll``; it keeps the embeddings apart);
- tT:    ||sqrt(abar_{T-1}) x0||^2, the mean of q(x_{T-1} | x0).

The cross-entropy of the rounded *prediction* is what we report as nll;
DiffuSeq logs it too but does not train on it.

Decoding jumps from t to any earlier s: ``ddpm`` samples the exact Gaussian
posterior q(x_s | x_t, x0_hat) of the jump, ``ddim`` is Song et al.'s eq. 12
(eta = 0: deterministic, eta = 1: the posterior's variance).  s = -1 returns
x0_hat, whose rounding is the output.  ``clamp_to_embeddings`` replaces x0_hat
by its nearest embedding (L2) before every step, DiffuSeq's clamping trick.

How this differs from DiffuSeq:

- Length: predicted from the encoder, as the discrete models.  The target is
  <bos> words <eos>, all three diffused; padding beyond the length is neither
  noised, attended to, nor in the loss, and the output gets <bos>/<eos> at the
  ends of the predicted length.  DiffuSeq pads every target to a fixed length
  with PAD tokens that are diffused and predicted like words; the length is
  where the rounded output's PADs start.
- Time is sampled uniformly (DiffuSeq: loss-aware resampling), and the network
  sees the raw 0-based timestep (DiffuSeq rescales it to [0, 1000)).
- Few steps: DiffuSeq's ``--step N`` visits range(T)[::-1][::T // N] (our
  ``uniform:N`` when N divides T), but moves each visited t only to t - 1 and
  rounds that last x_{t-1}, not x0_hat; we jump to the next scheduled timestep.
- DDPM variance: the posterior's; DiffuSeq's ``p_sample`` uses beta ("fixedlarge").
- Rounding never yields <pad> (it marks positions beyond the length), and the
  tied projection has no bias (DiffuSeq's lm_head has one).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UsageError
from .base import DiffusionProcess, mean_in_float
from .decoding import DecodeState
from .noise import log_alpha_bar


@dataclass
class X0Prediction:
    """What a continuous model's decoder returns."""

    x0: torch.Tensor  # [B, L, D] predicted x0 in embedding space
    embeddings: torch.Tensor  # [V, D] the embedding matrix, also the output projection


class ContinuousDiffusion(DiffusionProcess):
    continuous = True

    def __init__(self, num_timesteps, vocab_size, pad, bos, eos, mask, embed_dim: int, noise_schedule="sqrt"):
        super().__init__(num_timesteps, vocab_size, pad, bos, eos, mask)
        self.embed_dim = embed_dim
        # float64 and not a buffer: .half() must not round abar, and nothing here belongs in a checkpoint.
        abar = log_alpha_bar(num_timesteps, noise_schedule).exp()
        self._abar = torch.cat([torch.ones(1, dtype=torch.float64), abar])  # index t + 1; abar_{-1} = 1

    # -- the process --------------------------------------------------------
    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """abar_t as float64 [B] for 0-based t in [-1, T); abar_{-1} = 1 (x0 itself)."""
        return self._abar.to(t.device)[t + 1]

    @staticmethod
    def _per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def marginal(self, x0: torch.Tensor, t: torch.Tensor):
        """Mean and standard deviation of q(x_t | x0)."""
        abar = self.alpha_bar(t)
        return self._per_row(abar.sqrt(), x0) * x0, self._per_row((1 - abar).sqrt(), x0)

    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor):
        """Mean and variance of q(x_s | x_t, x0) for s < t; s = -1 gives (x0, 0).

        The jump's own alpha is abar_t / abar_s, so this is the one-step DDPM
        posterior with alpha_t replaced by it (Bayes with two Gaussians).
        """
        abar_t, abar_s = self.alpha_bar(t), self.alpha_bar(s)
        jump = abar_t / abar_s
        coef_x0 = abar_s.sqrt() * (1 - jump) / (1 - abar_t)
        coef_xt = jump.sqrt() * (1 - abar_s) / (1 - abar_t)
        variance = (1 - abar_s) * (1 - jump) / (1 - abar_t)
        mean = self._per_row(coef_x0, x0) * x0 + self._per_row(coef_xt, x_t) * x_t
        return mean, self._per_row(variance, x0)

    def ddim_step(self, x0, x_t, t, s, eta: float, noise=None):
        """x_s from DDIM (Song et al. 2021, eq. 12) for a jump t -> s, given the x0 estimate."""
        abar_t, abar_s = self.alpha_bar(t), self.alpha_bar(s)
        eps = (x_t - self._per_row(abar_t.sqrt(), x0) * x0) / self._per_row((1 - abar_t).sqrt(), x0)
        sigma = eta * ((1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s)).sqrt()
        direction = (1 - abar_s - sigma ** 2).clamp(min=0).sqrt()
        x_s = self._per_row(abar_s.sqrt(), x0) * x0 + self._per_row(direction, x0) * eps
        if noise is not None and eta > 0:
            x_s = x_s + self._per_row(sigma, x0) * noise
        return x_s

    # -- training -----------------------------------------------------------
    def sample_time(self, batch_size, device):
        t, _ = super().sample_time(batch_size, device)
        # DiffuSeq weights a uniformly drawn t by 1/(T p(t)) = 1, not RDM's 1/p(t) = T.
        return t, torch.ones(batch_size, device=device)

    def corrupt(self, embedded: torch.Tensor, t: torch.Tensor, positions: torch.Tensor):
        """x_t for the embedded target ``embedded`` [B, L, D]; ``positions`` [B, L] marks non-pad ones."""
        keep = positions.unsqueeze(-1).to(embedded.dtype)
        std0 = float((1 - self.alpha_bar(torch.zeros(1, dtype=torch.long))).sqrt())
        x_start = embedded + std0 * torch.randn_like(embedded)  # x0 ~ q(x0 | w)
        mean, std = self.marginal(x_start, t)
        x_t = (mean + std * torch.randn_like(x_start)) * keep
        return {"x_t": x_t, "x_start": x_start, "embedded": embedded, "positions": positions}

    def loss(self, prediction: X0Prediction, x0, corrupted, t, weight, label_smoothing):
        """(loss, nll): DiffuSeq's mse + round + tT, and the prediction's rounding cross-entropy."""
        positions = corrupted["positions"]
        count = positions.sum(1).clamp(min=1).to(prediction.x0.dtype)

        def per_sentence(per_position):  # masked_fill: a pad target's -log p(pad) is inf
            return per_position.masked_fill(~positions, 0.0).sum(1) / count

        x_start = corrupted["x_start"]
        target = torch.where((t == 0).view(-1, 1, 1), corrupted["embedded"], x_start)
        mse = per_sentence(((prediction.x0 - target) ** 2).mean(-1))
        last = torch.full_like(t, self.num_timesteps - 1)
        t_T = per_sentence((self.marginal(x_start, last)[0] ** 2).mean(-1))
        rounding = per_sentence(self._rounding_nll(x_start, prediction.embeddings, x0))
        nll = per_sentence(self._rounding_nll(prediction.x0, prediction.embeddings, x0))
        return mean_in_float(weight * (mse + rounding + t_T)), mean_in_float(weight * nll)

    def _rounding_nll(self, x, embeddings, tokens):
        log_probs = self.rounding_log_probs(x, embeddings)
        return -log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)

    # -- decoding -----------------------------------------------------------
    def rounding_log_probs(self, x: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """log p(w | x) through the tied projection; <pad> is never a word here."""
        logits = F.linear(x, embeddings)
        logits[..., self.pad] = float("-inf")
        return torch.log_softmax(logits.float(), dim=-1).type_as(logits)

    def nearest_embeddings(self, x: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """Each vector replaced by its nearest (L2) embedding, <pad> excluded (DiffuSeq's clamping)."""
        distance = (embeddings ** 2).sum(-1) - 2 * F.linear(x, embeddings)  # + ||x||^2, same for all words
        distance[..., self.pad] = float("inf")
        return F.embedding(distance.argmin(-1), embeddings)

    def initial_state(self, lengths, max_length, rng):
        body = torch.full((lengths.size(0), max_length), self.mask, dtype=torch.long, device=lengths.device)
        tokens = self._frame(body, lengths)
        keep = tokens.ne(self.pad).unsqueeze(-1)
        x = rng.normal((lengths.size(0), max_length, self.embed_dim), lengths.device) * keep
        return DecodeState(tokens, torch.zeros(tokens.shape, device=tokens.device), keep.squeeze(-1), x)

    def check_decoding(self, options):
        if options.reparam is not None:
            raise UsageError(f"--decoding-strategy {options.strategy} is for discrete diffusion; continuous "
                             f"models decode with --continuous-sampler ddim|ddpm")
        if options.time_difference or options.temperature_annealing:
            raise UsageError("--decoding-time-difference and --temperature-annealing are RDM's, for discrete "
                             "diffusion; continuous models decode with --continuous-sampler ddim|ddpm")

    def reverse_step(self, state, prediction: X0Prediction, t, s, rate, options, rng):
        """x_t -> x_s for every row (s = -1: x0_hat); at the last pass tokens and scores round x0_hat."""
        # The state stays in its own dtype (float32 even when the network runs in fp16).
        x0, embeddings = prediction.x0.type_as(state.x), prediction.embeddings.type_as(state.x)
        if options.clamp_to_embeddings:
            x0 = self.nearest_embeddings(x0, embeddings)
        # The last pass (s = -1 for every schedule together) needs no noise, and only it is rounded.
        last = not bool((s >= 0).any())
        wants_noise = not last and (options.continuous_sampler == "ddpm" or options.ddim_eta > 0)
        noise = rng.normal(x0.shape, x0.device).type_as(x0) if wants_noise else None
        if options.continuous_sampler == "ddpm":
            mean, variance = self.posterior(x0, state.x, t, s)
            x = mean if noise is None else mean + variance.sqrt() * noise
        else:
            x = self.ddim_step(x0, state.x, t, s, options.ddim_eta, noise)
        keep = state.tokens.ne(self.pad)
        x = x * keep.unsqueeze(-1)
        if not last:  # rounding costs a vocabulary-wide softmax; keep the estimate for --retain-iter-history
            return DecodeState(state.tokens, state.scores, state.noisy, x, X0Prediction(x0, embeddings))
        tokens, scores = self._round(x0, embeddings, keep)
        return DecodeState(tokens, scores, state.noisy, x)

    def _round(self, x0, embeddings, keep):
        """Tokens framed to each row's length, and their log-probabilities."""
        log_probs = self.rounding_log_probs(x0, embeddings)
        tokens = self._frame(log_probs.argmax(-1), keep.sum(1))
        return tokens, log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)

    def visible_tokens(self, state):
        if state.prediction is None:
            return state.tokens
        return self._round(state.prediction.x0, state.prediction.embeddings, state.tokens.ne(self.pad))[0]
