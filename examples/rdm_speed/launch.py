"""Run a fairseq ``generate.py`` unchanged, from the outside: RDM's fork or stock fairseq's, the same way.

Usage: python launch.py <path to generate.py> [generate args...]

Two things happen before the script runs, for both sides of the comparison alike:
- torch >= 2.6 unpickles checkpoints with ``weights_only=True``; RDM checkpoints store their config as an
  ``argparse.Namespace``, so that one class is allow-listed (weights_only stays on).
- ``torch.fx.experimental.symbolic_shapes`` is imported.  torch imports it lazily on the first attention
  call with a padding mask (``torch._check_with``), which puts ~0.6 s of module loading inside the first
  batch that fairseq's generation timer measures, on either side: on the toy fixture that is more than the
  whole decode.

Nothing of either script is modified or copied: it is executed in place with :func:`runpy.run_path`.
"""
import argparse
import os
import runpy
import sys

import torch
import torch.fx.experimental.symbolic_shapes  # noqa: F401  (see above)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: launch.py <generate.py> [args...]")
    script = os.path.abspath(sys.argv[1])
    torch.serialization.add_safe_globals([argparse.Namespace])
    # Behave as `python <script> args...` would: argv[0] is the script and the
    # script's directory is sys.path[0].
    sys.argv = [script] + sys.argv[2:]
    sys.path[0] = os.path.dirname(script)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
