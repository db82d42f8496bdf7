#!/usr/bin/env bash
# The test command: make the virtualenv if needed, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/make-venv.sh
. "${FAIRSEQ_TP_VENV:-.venv}/bin/activate"
# One worker per core, one thread each (conftest pins torch to one thread; an OpenMP team of two slows
# ~15x when another process holds a core). Whole test files go to one worker, so a file's module fixtures
# are built once. FAIRSEQ_TP_TEST_WORKERS=0 runs in this process.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
set +e
python -m pytest -q -n "${FAIRSEQ_TP_TEST_WORKERS:-auto}" --dist loadfile "$@"
status=$?
# pytest's 5 means no test ran: that is a failure here.
[ "$status" -eq 5 ] && echo "no tests were collected" >&2 && exit 1
exit "$status"
