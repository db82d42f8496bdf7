"""Decoding pieces shared by every process: options, state, randomness, token
picking and the reparameterised (RDM) top-k routing."""
import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from ..errors import UsageError

RATE_SOURCES = ("pass-index", "timestep")
CONTINUOUS_SAMPLERS = ("ddim", "ddpm")


@dataclass(frozen=True)
class ReparamStrategy:
    """``reparam-<cond|uncond>-<deterministic|stochasticF>-<linear|cosine>`` (RDM)."""

    conditional: bool
    noise_scale: Optional[float]  # None: deterministic top-k
    schedule: str

    @classmethod
    def parse(cls, name: str) -> Optional["ReparamStrategy"]:
        """None for ``default``; ValueError with a one-line message when malformed."""
        if name == "default":
            return None
        parts = name.split("-")
        expected = "default or reparam-<cond|uncond>-<deterministic|stochasticF>-<linear|cosine>"
        if len(parts) != 4 or parts[0] != "reparam":
            raise UsageError(f"unknown --decoding-strategy '{name}' (expected {expected})")
        _, condition, topk, schedule = parts
        if condition not in ("cond", "uncond") or schedule not in ("linear", "cosine"):
            raise UsageError(f"unknown --decoding-strategy '{name}' (expected {expected})")
        if topk == "deterministic":
            scale = None
        elif topk.startswith("stochastic"):
            try:
                scale = float(topk[len("stochastic"):])
            except ValueError:
                raise UsageError(f"unknown --decoding-strategy '{name}' (expected {expected})") from None
        else:
            raise UsageError(f"unknown --decoding-strategy '{name}' (expected {expected})")
        return cls(condition == "cond", scale, schedule)

    def rate(self, progress: torch.Tensor) -> torch.Tensor:
        """Share of tokens left noisy after a pass; ``progress`` in [0, 1] is how far decoding is."""
        if self.schedule == "linear":
            return 1 - progress
        return torch.cos(progress * (math.pi * 0.5))


def pass_rates(strategy: Optional[ReparamStrategy], rates: Optional[Sequence[float]], rate_from: str,
               targets: torch.Tensor, num_timesteps: int) -> torch.Tensor:
    """[rows, passes] float64: the share of tokens left noisy after each pass, for rows whose pass
    targets are ``targets`` [rows, passes] (-1: x0).  A schedule's own ``rates`` win; else the
    strategy's curve of the progress, (pass + 1) / passes as RDM, or 1 - (target + 1) / T with
    ``--denoising-rate timestep``.  Zeros for ``default``, which reads no rate."""
    rows, passes = targets.shape
    if strategy is None:
        return torch.zeros(rows, passes, dtype=torch.float64, device=targets.device)
    if rates is not None:
        return torch.tensor(rates, dtype=torch.float64, device=targets.device).expand(rows, passes)
    if rate_from == "timestep":
        progress = 1 - (targets.double() + 1) / num_timesteps
    else:
        progress = (torch.arange(passes, dtype=torch.float64, device=targets.device) + 1).div(passes)
        progress = progress.expand(rows, passes)
    return strategy.rate(progress)


def check_schedule_rates(options: "DecodingOptions", continuous: bool) -> None:
    """ValueError (one line) where a schedule's own rates cannot be honoured."""
    if continuous:
        raise UsageError("schedule rates (TIMESTEPS@RATES) set how many tokens a pass unmasks: continuous models "
                         "have no tokens to unmask")
    if options.reparam is None:
        raise UsageError("schedule rates (TIMESTEPS@RATES) replace the curve of RDM's reparam-* decoding strategies; "
                         "--decoding-strategy default unmasks at the pace of the timesteps and reads no rate")
    if options.rate_from == "timestep":
        raise UsageError("schedule rates (TIMESTEPS@RATES) replace the denoising rate: drop --denoising-rate timestep")


def annealed_temperature(index: int, passes: int) -> float:
    """RDM's annealing, 0.5 at the first pass down to 0.45 at the last; one pass (where RDM divides
    by zero) gets 0.5, the first pass's value."""
    return 0.5 - 0.05 * (index / (passes - 1) if passes > 1 else 0.0)


def check_rdm_decoding(strategy, time_difference, annealing: bool, argmax: bool, temperature: float) -> None:
    """One-line ValueErrors for RDM's decoding options where RDM would silently do nothing."""
    if isinstance(time_difference, bool) or not isinstance(time_difference, int) or time_difference < 0:
        raise UsageError(f"--decoding-time-difference must be a non-negative integer, got {time_difference}")
    if time_difference and strategy is not None:
        raise UsageError("--decoding-time-difference applies to --decoding-strategy default only "
                         "(RDM's reparam strategies never read it)")
    if annealing and argmax:
        raise UsageError("--temperature-annealing sets the sampling temperature, and --argmax-decoding "
                         "samples nothing: drop one of them")
    if annealing and temperature != 1.0:
        raise UsageError("--temperature-annealing sets the temperature of every pass itself (RDM ignores "
                         f"--temperature then): drop --temperature {temperature}")


def check_continuous_options(sampler: str, eta: float, mbr_samples: int) -> None:
    """One-line ValueErrors for the continuous models' and MBR's option values."""
    if sampler not in CONTINUOUS_SAMPLERS:
        raise UsageError(f"--continuous-sampler must be one of {', '.join(CONTINUOUS_SAMPLERS)}, got '{sampler}'")
    # Above 1 DDIM's sigma can exceed the noise left at s (sqrt of a negative).
    if not 0.0 <= eta <= 1.0:
        raise UsageError(f"--ddim-eta must be in [0, 1], got {eta}")
    if isinstance(mbr_samples, bool) or not isinstance(mbr_samples, int) or mbr_samples < 1:
        raise UsageError(f"--mbr-samples must be a positive integer, got {mbr_samples}")


@dataclass(frozen=True)
class DecodingOptions:
    strategy: str = "default"
    argmax: bool = False
    temperature: float = 1.0
    rate_from: str = "pass-index"
    # continuous (Gaussian) models only; see diffusion/continuous.py
    continuous_sampler: str = "ddim"
    ddim_eta: float = 0.0
    clamp_to_embeddings: bool = False
    # any model: decode this many samples per sentence and keep the MBR choice
    mbr_samples: int = 1
    # RDM's --decoding-time-difference (Bit Diffusion's asymmetric time interval; default strategy only)
    time_difference: int = 0
    # RDM's --temperature-annealing: sampling temperature 0.5 - 0.05 * i / (N - 1) at pass i of N
    temperature_annealing: bool = False

    def __post_init__(self):
        parsed = self.reparam
        if self.rate_from not in RATE_SOURCES:
            raise UsageError(f"unknown denoising rate source '{self.rate_from}' (choose from {', '.join(RATE_SOURCES)})")
        if not self.argmax and self.temperature <= 0:
            raise UsageError(f"--temperature must be positive when sampling, got {self.temperature}")
        check_continuous_options(self.continuous_sampler, self.ddim_eta, self.mbr_samples)
        check_rdm_decoding(parsed, self.time_difference, self.temperature_annealing, self.argmax, self.temperature)

    def for_pass(self, index: int, passes: int) -> "DecodingOptions":
        """The options of pass ``index`` of ``passes``: annealing fixes that pass's temperature."""
        if not self.temperature_annealing:
            return self
        return dataclasses.replace(self, temperature=annealed_temperature(index, passes), temperature_annealing=False)

    @property
    def continuous_defaults(self) -> bool:
        """True when no continuous-only option is set (what discrete models require)."""
        return (self.continuous_sampler, self.ddim_eta, self.clamp_to_embeddings) == ("ddim", 0.0, False)

    @functools.cached_property
    def reparam(self) -> Optional[ReparamStrategy]:
        # Parsed once, when the options are built; the decode loop asks on every pass.
        return ReparamStrategy.parse(self.strategy)


@dataclass
class DecodeState:
    tokens: torch.Tensor  # [B, L] current x_t (continuous: the frame and the rounded x0 prediction)
    scores: torch.Tensor  # [B, L] log-prob of the token at each position (0 where never predicted)
    noisy: torch.Tensor  # [B, L] positions not yet denoised (RDM's "output_masks")
    x: Optional[torch.Tensor] = None  # [B, L, D] continuous models' x_t in embedding space
    # continuous models between passes: the last x0 estimate (an X0Prediction), rounded only on demand
    prediction: Optional[object] = None

    def rows(self, index: torch.Tensor) -> "DecodeState":
        """The state of rows ``index`` (discrete models: tokens, scores, noisy)."""
        return DecodeState(self.tokens[index], self.scores[index], self.noisy[index])

    def with_rows(self, index: torch.Tensor, part: "DecodeState") -> "DecodeState":
        """A copy whose rows ``index`` are ``part``."""
        tokens, scores, noisy = self.tokens.clone(), self.scores.clone(), self.noisy.clone()
        tokens[index], scores[index], noisy[index] = part.tokens, part.scores.type_as(scores), part.noisy
        return DecodeState(tokens, scores, noisy)


def rdm_uniform_step(index: int, passes: torch.Tensor, num_timesteps: int):
    """Per row, the 0-based timestep and target of pass ``index`` of a ``uniform:passes[row]``
    schedule (RDM's batched spacing for adaptive decoding, the same as ``Schedule.uniform``)."""
    size = torch.div(num_timesteps, passes, rounding_mode="floor")
    longer = num_timesteps - size * passes  # the first ``longer`` passes stride size + 1
    stride = torch.where(index < longer, size + 1, size)
    step = torch.where(index < longer, num_timesteps - index * stride, num_timesteps - longer - index * size)
    return step - 1, step - 1 - stride


class RandomSource:
    """Uniform and Gaussian noise for decoding.

    Without generators it uses torch's global RNG (what fairseq-generate seeds).
    With G generators, the batch is G equal groups of rows and each group draws
    from its own generator, so a row's noise does not depend on what else shares
    the batch (the search decodes several schedules at once with common noise).
    """

    def __init__(self, generators: Optional[Sequence[torch.Generator]] = None):
        self.generators: List[torch.Generator] = list(generators or [])

    def uniform(self, shape, device) -> torch.Tensor:
        return self._draw(torch.rand, shape, device)

    def normal(self, shape, device) -> torch.Tensor:
        return self._draw(torch.randn, shape, device)

    def _draw(self, sampler, shape, device) -> torch.Tensor:
        if not self.generators:
            return sampler(shape, device=device)
        groups = len(self.generators)
        if shape[0] % groups:
            raise ValueError(f"batch of {shape[0]} rows does not split into {groups} groups")
        rows = (shape[0] // groups,) + tuple(shape[1:])
        parts = [sampler(rows, generator=g, device=g.device).to(device) for g in self.generators]
        return torch.cat(parts, dim=0)

    def gumbel(self, shape, device, eps: float = 1e-10) -> torch.Tensor:
        return -torch.log(-torch.log(self.uniform(shape, device) + eps) + eps)


def pick_tokens(log_probs: torch.Tensor, options: DecodingOptions, rng: RandomSource):
    """Argmax, or a sample at the given temperature (Gumbel-max); returns (scores, tokens)."""
    if options.argmax:
        return log_probs.max(-1)
    noisy = log_probs / options.temperature + rng.gumbel(log_probs.shape, log_probs.device)
    tokens = noisy.argmax(-1)
    return log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1), tokens


def argmax_log_prob(logits: torch.Tensor):
    """(log-probability, token) of each position's most likely token: ``log_softmax(logits).max(-1)``
    without a [B, L, V] log-softmax or copy (the max's log-probability is -log sum exp(logit - max)).
    Overwrites ``logits``."""
    best, tokens = logits.max(-1)
    normaliser = logits.sub_(best.unsqueeze(-1)).exp_().sum(-1)
    return normaliser.log_().neg_(), tokens


def sample_categorical(log_probs: torch.Tensor, rng: RandomSource) -> torch.Tensor:
    return (log_probs + rng.gumbel(log_probs.shape, log_probs.device)).argmax(-1)


def lowest_k(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Positions whose score is below the (k+1)-th smallest plus 1e-10, in the scores' dtype.

    This is RDM's cut-off; in float32 the 1e-10 usually vanishes, so about k
    positions are chosen, and the arithmetic must stay as is to reproduce RDM.
    """
    cutoff = scores.sort(-1)[0].gather(-1, k) + 1e-10
    return scores < cutoff


def reparam_route(
    state: DecodeState,
    cur_scores: torch.Tensor,
    cur_tokens: torch.Tensor,
    noise_tokens: torch.Tensor,
    non_special: torch.Tensor,
    rate: torch.Tensor,
    strategy: ReparamStrategy,
    rng: RandomSource,
) -> DecodeState:
    """One reparameterised step (Zheng et al. 2023): keep the lowest-scoring share
    ``rate`` of positions noisy and commit the rest to the x0 prediction.

    ``rate`` is [B] (float64); ``noise_tokens`` is what a position turns into when routed to noise.
    """
    rate = rate.to(cur_scores.dtype)  # RDM multiplies in the scores' dtype; .long() truncates
    cutoff_len = (non_special.sum(1, keepdim=True).type_as(cur_scores) * rate.unsqueeze(1)).long()
    topk_scores = cur_scores.masked_fill(~non_special, 1000.0)
    if strategy.noise_scale is not None:
        temp = (strategy.noise_scale * rate).unsqueeze(1)
        topk_scores = topk_scores + temp * rng.gumbel(topk_scores.shape, topk_scores.device)
    to_noise_if_noisy = lowest_k(topk_scores, cutoff_len)
    if strategy.conditional:
        # Re-noise a committed token only if the network now agrees on it less confidently.
        to_noise_if_clean = (cur_tokens == state.tokens) & (cur_scores < state.scores) & to_noise_if_noisy
    else:
        to_noise_if_clean = to_noise_if_noisy

    noisy = state.noisy
    to_noise = (~noisy & to_noise_if_clean) | (noisy & to_noise_if_noisy)
    to_x0 = noisy & ~to_noise_if_noisy
    return apply_routing(state, to_noise, to_x0, noise_tokens, cur_tokens, cur_scores,
                         (noisy | to_noise_if_clean) & to_noise_if_noisy)


def apply_routing(state: DecodeState, to_noise, to_x0, noise_tokens, cur_tokens, cur_scores, noisy) -> DecodeState:
    """Positions routed to noise take ``noise_tokens`` (score -inf), those routed to x0 the prediction
    ``cur_tokens``/``cur_scores``; the rest keep their token and score.  ``noisy`` is the new noisy mask."""
    tokens = torch.where(to_noise, noise_tokens, torch.where(to_x0, cur_tokens, state.tokens))
    scores = torch.where(to_noise, torch.full_like(cur_scores, -math.inf), torch.where(to_x0, cur_scores, state.scores))
    return DecodeState(tokens, scores, noisy)
