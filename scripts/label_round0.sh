#!/usr/bin/env bash
# Start or resume labelling the round-0 La-H training set in the background (2 MPI ranks, nice 19).
# Progress: .venv/bin/python -m dpqtb.dft.cli label --store data/labels/round0 --status
# Log: data/labels/round0/runner.log.  Safe to re-run: labelled frames are never recomputed.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m dpqtb.dft.cli label --store data/labels/round0 --background "$@"
