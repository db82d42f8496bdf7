"""Run RDM's forked ``fairseq_cli/generate.py`` unchanged, from the outside.

Usage: python rdm_launch.py <RDM>/fairseq/fairseq_cli/generate.py [generate args...]

torch >= 2.6 unpickles checkpoints with ``weights_only=True``; RDM checkpoints store
their config as an ``argparse.Namespace``, so that one class is allow-listed here
before RDM's script runs. weights_only stays on; nothing of RDM's code is modified
or copied — the script is executed in place with :func:`runpy.run_path`.
"""
import argparse
import os
import runpy
import sys

import torch


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: rdm_launch.py <RDM generate.py> [args...]")
    script = os.path.abspath(sys.argv[1])
    torch.serialization.add_safe_globals([argparse.Namespace])
    # Behave as `python <script> args...` would: argv[0] is the script and the
    # script's directory is sys.path[0].
    sys.argv = [script] + sys.argv[2:]
    sys.path[0] = os.path.dirname(script)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
