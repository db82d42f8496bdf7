"""Noise schedules and log-space helpers shared by the discrete processes (pure torch)."""
import math

import numpy as np
import torch

from ..errors import UsageError

ALPHA_SCHEDULES = ("cosine", "linear", "sqrt")


def log_alpha_bar(num_timesteps: int, name: str = "cosine", alpha_min: float = 1e-3) -> torch.Tensor:
    """log of the cumulative keep-probability abar_t for t = 0..T-1 (float64).

    Per-step alphas are ratios of a named abar curve, clipped to
    [alpha_min, 1] as in multinomial diffusion (Hoogeboom et al.) and RDM,
    then accumulated, so the clipped curve is the one the models were trained on.
    """
    steps = num_timesteps + 1
    x = np.linspace(0, steps, steps)
    if name == "linear":
        abar = np.linspace(1, 0.0, steps)
    elif name == "cosine":
        s = 0.008
        abar = np.cos(((x / steps) + s) / (1 + s) * np.pi * 0.5) ** 2
        abar = abar / abar[0]
    elif name == "sqrt":
        abar = 1 - np.sqrt((x / steps) + 0.0001)
        abar = abar / abar[0]
    else:
        raise UsageError(f"unknown noise schedule '{name}' (choose from {', '.join(ALPHA_SCHEDULES)})")
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = np.clip(abar[1:] / abar[:-1], alpha_min, 1.0)
    return torch.from_numpy(np.cumsum(np.log(alphas)))


def log1mexp(a: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """log(1 - exp(a)) for a <= 0, stable on both sides of log 2."""
    a = -a.abs()
    return torch.where(a > -math.log(2), torch.log(-torch.expm1(a) + eps), torch.log1p(-torch.exp(a) + eps))


def log_sub_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(exp(a) - exp(b)) for a >= b."""
    return a + log1mexp(b - a)
