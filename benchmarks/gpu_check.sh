#!/usr/bin/env bash
# The GPU figures in one command, made for a short loan of a bare GPU machine (README "GPU figures"):
#
#   bash benchmarks/gpu_check.sh --budget-s 480 --out "$OUT"   # the device tool's run, timeout_s 600
#   bash benchmarks/gpu_check.sh --quick --budget-s 25          # tiny sizes: end to end on a CPU (CI)
#
# --budget-s N (default 420): no step starts unless its estimate fits in the time left; DIR/gpu_check.json
# is rewritten after every step (a kill keeps what was measured). DIR (default results/gpu_check/<host>-
# <time>) gets at most 5 files: gpu_check.json, gpu_check.md, gpu_check.log, cells.tar.gz, doctor.json.
# Data and cache go to a work folder under $TMPDIR, removed at the end. See benchmarks/gpu_check.py.
#
# Python: $PYTHON, else the repository's .venv, else python3 (on a lent GPU machine: its own, with torch).
# Wheels for packages that machine lacks may travel in .whl/ (the device README's recipe): they are
# installed into $TMPDIR/aslhpc-site first, never over the machine's own packages.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then py="$here/.venv/bin/python"; else py="$(command -v python3)"; fi
fi
extra=""
if compgen -G "$here/.whl/*.whl" >/dev/null; then
  site="${TMPDIR:-/tmp}/aslhpc-site"
  if "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      "$here"/.whl/*.whl; then
    extra="$site"
  else
    echo "gpu_check: installing .whl/*.whl failed; going on without them" >&2
  fi
fi
export PYTHONPATH="$here${extra:+:$extra}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$py" "$here/benchmarks/gpu_check.py" "$@"
