"""The fairseq glue: ``--task diffusion_translation``, ``--arch diffusion_transformer*``,
``--criterion diffusion_loss`` and the diffusion generator.  Importing registers them."""
from ..errors import install_one_line_errors
from . import criterion, model, task  # noqa: F401  (registration)

install_one_line_errors()
