"""Diffusion processes in pure torch (no fairseq import): discrete and continuous."""
from ..errors import UsageError
from .absorbing import AbsorbingDiffusion, ReparamAbsorbingDiffusion
from .base import DiffusionProcess, DiscreteDiffusion
from .continuous import ContinuousDiffusion, X0Prediction
from .decoding import CONTINUOUS_SAMPLERS, DecodeState, DecodingOptions, RandomSource, ReparamStrategy
from .multinomial import MultinomialDiffusion, ReparamMultinomialDiffusion

DIFFUSION_TYPES = ("absorbing", "multinomial", "reparam-absorbing", "reparam-multinomial", "continuous")
MAX_TIMESTEPS = 100_000  # RDM and DiffuSeq train with T <= 2000; tables of T rows must fit in memory


def check_num_timesteps(value) -> int:
    """``--num-diffusion-timesteps`` (from a command line or a checkpoint) as an int, or a one-line ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TIMESTEPS:
        raise UsageError(f"--num-diffusion-timesteps must be an integer in [1, {MAX_TIMESTEPS:,}], got {value!r}")
    return value


def build_diffusion(diffusion_type: str, num_timesteps: int, vocab_size: int, *, pad: int, bos: int,
                    eos: int, mask: int, not_diffusing_special_sym: bool = False,
                    lambda_direct_xentropy: float = -1.0, reweighting_type: str = "linear",
                    noise_scheduler_type=None, decoder_loss_type: str = "orig",
                    noise_distribution: str = "uniform", vocab_count=None, embed_dim=None) -> DiffusionProcess:
    """The process named by ``--diffusion-type`` (RDM's names, and ``continuous``); options it
    does not use are ignored.  ``noise_scheduler_type`` None means the family's own:
    cosine for multinomial (RDM), sqrt for continuous (DiffuSeq)."""
    ids = dict(pad=pad, bos=bos, eos=eos, mask=mask)
    if diffusion_type == "continuous":
        if embed_dim is None:
            raise UsageError("--diffusion-type continuous needs the embedding dimension")
        return ContinuousDiffusion(num_timesteps, vocab_size, **ids, embed_dim=embed_dim,
                                   noise_schedule=noise_scheduler_type or "sqrt")
    noise_scheduler_type = noise_scheduler_type or "cosine"
    if diffusion_type == "absorbing":
        return AbsorbingDiffusion(num_timesteps, vocab_size, **ids, not_diffusing_special_sym=not_diffusing_special_sym,
                                  lambda_direct_xentropy=lambda_direct_xentropy)
    if diffusion_type == "reparam-absorbing":
        return ReparamAbsorbingDiffusion(num_timesteps, vocab_size, **ids,
                                         not_diffusing_special_sym=not_diffusing_special_sym,
                                         reweighting_type=reweighting_type)
    if diffusion_type == "multinomial":
        return MultinomialDiffusion(num_timesteps, vocab_size, **ids, noise_scheduler_type=noise_scheduler_type,
                                    decoder_loss_type=decoder_loss_type, lambda_direct_xentropy=lambda_direct_xentropy,
                                    not_diffusing_special_sym=not_diffusing_special_sym)
    if diffusion_type == "reparam-multinomial":
        return ReparamMultinomialDiffusion(num_timesteps, vocab_size, **ids, noise_scheduler_type=noise_scheduler_type,
                                           reweighting_type=reweighting_type, noise_distribution=noise_distribution,
                                           vocab_count=vocab_count, not_diffusing_special_sym=not_diffusing_special_sym)
    raise UsageError(f"unknown --diffusion-type '{diffusion_type}' (choose from {', '.join(DIFFUSION_TYPES)})")


__all__ = [
    "MAX_TIMESTEPS", "check_num_timesteps",
    "AbsorbingDiffusion", "CONTINUOUS_SAMPLERS", "ContinuousDiffusion", "DIFFUSION_TYPES", "DecodeState",
    "DecodingOptions", "DiffusionProcess", "DiscreteDiffusion", "MultinomialDiffusion", "RandomSource",
    "ReparamAbsorbingDiffusion", "ReparamMultinomialDiffusion", "ReparamStrategy", "X0Prediction",
    "build_diffusion",
]
