#!/usr/bin/env bash
# The demo: make the virtualenv if needed, then train a small diffusion model on generated data and decode
# it under all T steps and under 4 (examples/toy_reversal/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/make-venv.sh
. "${FAIRSEQ_TP_VENV:-.venv}/bin/activate"
bash examples/toy_reversal/run.sh "$@"
