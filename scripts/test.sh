#!/usr/bin/env bash
# The test command: make the virtualenv if needed, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/make-venv.sh
. "${FAIRSEQ_TP_VENV:-.venv}/bin/activate"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
set +e
python -m pytest -q "$@"
status=$?
# pytest's 5 means no test ran: that is a failure here.
[ "$status" -eq 5 ] && echo "no tests were collected" >&2 && exit 1
exit "$status"
