"""Criteria (fairseq glue)."""
from . import diffusion_loss  # noqa: F401
