#!/usr/bin/env bash
# The GPU figures in one command, on one GPU node (under 8 minutes; README "GPU figures"):
#
#   bash benchmarks/gpu_check.sh [--out DIR]        # full: doctor, bench --full, paper epochs, probes
#   bash benchmarks/gpu_check.sh --quick            # reduced: end to end on a CPU in well under a minute
#
# Writes DIR/gpu_check.json, DIR/gpu_check.md, DIR/doctor.json and DIR/logs/<step>.log
# (DIR defaults to results/gpu_check/<host>-<time>). Uses $PYTHON, else the repository's .venv, else python3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then py="$here/.venv/bin/python"; else py="$(command -v python3)"; fi
fi
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" "$here/benchmarks/gpu_check.py" "$@"
