"""What a training step draws (pure torch): RDM's ``--time-sampler-type`` and ``--q-sample-mode``.

``coupled``, ``multi-sample`` and ``multi-step`` return the batch twice (the caller repeats the
source and target to match), so their loss is the mean over both copies, as RDM's.
"""
import logging
from typing import Dict, Tuple

import torch

from ..errors import UsageError
from .multinomial import SPECIALS_REQUIRED

logger = logging.getLogger(__name__)

Q_SAMPLE_MODES = ("default", "coupled", "multi-step", "multi-sample")
TIME_SAMPLERS = ("uniform", "is", "none")


def check_training_options(q_sample_mode: str, time_sampler_type: str, diffusion_type: str = "absorbing",
                           not_diffusing_special_sym: bool = True) -> None:
    """One-line ValueErrors for values RDM has no working code for (checked before training starts)."""
    if diffusion_type == "multinomial" and not not_diffusing_special_sym:
        raise UsageError(SPECIALS_REQUIRED)
    if diffusion_type == "continuous" and q_sample_mode != "default":
        raise UsageError(f"--q-sample-mode {q_sample_mode} is RDM's, for discrete diffusion; continuous "
                         "models train with default")
    if q_sample_mode not in Q_SAMPLE_MODES:
        raise UsageError(f"--q-sample-mode must be one of {', '.join(Q_SAMPLE_MODES)}, got '{q_sample_mode}'")
    if time_sampler_type == "none":
        raise UsageError("--time-sampler-type none: RDM's NoneSampler draws no timesteps, so its training "
                         "crashes on the first batch; use uniform")
    if time_sampler_type not in TIME_SAMPLERS:
        raise UsageError(f"--time-sampler-type must be uniform or is, got '{time_sampler_type}'")


def note_time_sampler(time_sampler_type: str) -> None:
    if time_sampler_type == "is":
        logger.warning("--time-sampler-type is: RDM never feeds its loss history (the update is commented "
                       "out), so it samples t uniformly with weight T; so does fairseq_tp")


def copies(q_sample_mode: str) -> int:
    """How many corrupted copies of the batch a mode trains on."""
    return 1 if q_sample_mode == "default" else 2


def training_draw(diffusion, x0: torch.Tensor, q_sample_mode: str) -> Tuple[Dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """(corrupted, t, weight) for ``x0`` [B, L]; rows are ``copies(q_sample_mode) * B``."""
    batch, device = x0.size(0), x0.device
    if q_sample_mode == "default":
        t, weight = diffusion.sample_time(batch, device)
        return diffusion.corrupt(x0, t), t, weight
    if q_sample_mode == "coupled":
        t1, weight = diffusion.sample_time(batch, device)
        t2, _ = diffusion.sample_time(batch, device)
        corrupted, t = diffusion.corrupt_coupled(x0, t1, t2)
        return corrupted, t, weight.repeat(2)  # RDM weighs both copies with t1's weight
    if q_sample_mode == "multi-sample":
        t, weight = diffusion.sample_time(batch, device)
        draws = [(t, weight), (t, weight)]
    elif q_sample_mode == "multi-step":
        draws = [diffusion.sample_time(batch, device) for _ in range(2)]
    else:
        raise UsageError(f"--q-sample-mode must be one of {', '.join(Q_SAMPLE_MODES)}, got '{q_sample_mode}'")
    parts = [diffusion.corrupt(x0, t) for t, _ in draws]
    corrupted = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
    return corrupted, torch.cat([t for t, _ in draws]), torch.cat([w for _, w in draws])
