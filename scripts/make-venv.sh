#!/usr/bin/env bash
# Create (or update) the virtualenv $FAIRSEQ_TP_VENV (default .venv) with CPU torch
# and fairseq_tp installed editable.  Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${FAIRSEQ_TP_VENV:-.venv}
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "make-venv: error: fairseq-tp needs Python 3.11 or newer; $python is $("$python" -V 2>&1) (set PYTHON=...)" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
. "$venv/bin/activate"
pip() { python -m pip --disable-pip-version-check -q "$@"; }
# torch first, pinned: a bare "torch" requirement would pull the newest CUDA build.
python -c "import torch" 2>/dev/null || pip install "torch==${FAIRSEQ_TP_TORCH:-2.13.0}"
# fairseq-fixed is an sdist whose build imports torch: build it in this env (no build
# isolation), otherwise pip would fetch another torch into the isolated build env.
pip install "setuptools<81" wheel cython numpy
python -c "import fairseq" 2>/dev/null || pip install --no-build-isolation "fairseq-fixed==0.12.3.1"
pip install --no-build-isolation -e ".[test,examples,paper]"
python -c "import torch, fairseq, botorch, fairseq_tp; print('env ready:', '$venv', 'torch', torch.__version__, 'fairseq', fairseq.__version__, 'botorch', botorch.__version__)" 2>&1 | grep -v tensorboardX
