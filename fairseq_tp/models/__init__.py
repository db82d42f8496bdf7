"""Models (fairseq glue); fairseq's --user-dir import also walks this folder."""
from . import diffusion_transformer  # noqa: F401
