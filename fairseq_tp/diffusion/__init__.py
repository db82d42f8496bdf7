"""Discrete diffusion processes in pure torch (no fairseq import)."""
from .absorbing import AbsorbingDiffusion, ReparamAbsorbingDiffusion
from .base import DiscreteDiffusion
from .decoding import DecodeState, DecodingOptions, RandomSource, ReparamStrategy
from .multinomial import MultinomialDiffusion, ReparamMultinomialDiffusion

DIFFUSION_TYPES = ("absorbing", "multinomial", "reparam-absorbing", "reparam-multinomial")


def build_diffusion(diffusion_type: str, num_timesteps: int, vocab_size: int, *, pad: int, bos: int,
                    eos: int, mask: int, not_diffusing_special_sym: bool = False,
                    lambda_direct_xentropy: float = -1.0, reweighting_type: str = "linear",
                    noise_scheduler_type: str = "cosine", decoder_loss_type: str = "orig",
                    noise_distribution: str = "uniform", vocab_count=None) -> DiscreteDiffusion:
    """The process named by RDM's ``--diffusion-type``; options it does not use are ignored."""
    ids = dict(pad=pad, bos=bos, eos=eos, mask=mask)
    if diffusion_type == "absorbing":
        return AbsorbingDiffusion(num_timesteps, vocab_size, **ids, not_diffusing_special_sym=not_diffusing_special_sym,
                                  lambda_direct_xentropy=lambda_direct_xentropy)
    if diffusion_type == "reparam-absorbing":
        return ReparamAbsorbingDiffusion(num_timesteps, vocab_size, **ids,
                                         not_diffusing_special_sym=not_diffusing_special_sym,
                                         reweighting_type=reweighting_type)
    if diffusion_type == "multinomial":
        return MultinomialDiffusion(num_timesteps, vocab_size, **ids, noise_scheduler_type=noise_scheduler_type,
                                    decoder_loss_type=decoder_loss_type, lambda_direct_xentropy=lambda_direct_xentropy)
    if diffusion_type == "reparam-multinomial":
        return ReparamMultinomialDiffusion(num_timesteps, vocab_size, **ids, noise_scheduler_type=noise_scheduler_type,
                                           reweighting_type=reweighting_type, noise_distribution=noise_distribution,
                                           vocab_count=vocab_count)
    raise ValueError(f"unknown --diffusion-type '{diffusion_type}' (choose from {', '.join(DIFFUSION_TYPES)})")


__all__ = [
    "AbsorbingDiffusion", "DIFFUSION_TYPES", "DecodeState", "DecodingOptions", "DiscreteDiffusion",
    "MultinomialDiffusion", "RandomSource", "ReparamAbsorbingDiffusion", "ReparamMultinomialDiffusion",
    "ReparamStrategy", "build_diffusion",
]
