#!/usr/bin/env bash
# The whole test suite, N times in a row (default 3), beside a CPU-heavy process: what "a test passes on a
# loaded 2-core machine three times in a row" means, run as CI runs it (a fresh clone of HEAD, the
# README's test command, the project's mini SLURM cluster up with limits enforced).
#   bash scripts/under_load.sh [N]      # logs and a one-line summary per run in $LOAD_WORK (a temp folder)
# The cluster is this machine's one mini cluster: do not run it beside .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
WORK=${LOAD_WORK:-$(mktemp -d)}
rm -rf "$WORK/clone" && git clone -q . "$WORK/clone" && cd "$WORK/clone"
echo "clone of $(git rev-parse --short HEAD) in $WORK/clone; $(nproc) cores"
MINISLURM_ENFORCE_LIMITS=1 bash scripts/minislurm.sh up 2 > "$WORK/cluster.log" 2>&1
python3 -c "while True: pass" &  # the other CPU-heavy process: one core kept busy for the whole time
HOG=$!
trap 'kill $HOG 2>/dev/null || true; bash scripts/minislurm.sh down >> "$WORK/cluster.log" 2>&1 || true' EXIT
python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e '.[dev]' > "$WORK/install.log" 2>&1
failed=0
for i in $(seq 1 "$RUNS"); do
    start=$SECONDS
    rc=0
    # each run's temporary folders (cells, logs, job folders) kept for a look at a failure: pytest itself
    # keeps only its last three, and a later run's would replace them
    PYTEST_ADDOPTS="--basetemp=$WORK/tmp$i" .venv/bin/python -m pytest -q > "$WORK/run$i.log" 2>&1 || rc=$?
    echo "run $i/$RUNS: rc=$rc in $((SECONDS - start)) s: $(tail -n 1 "$WORK/run$i.log")"
    [ "$rc" -eq 0 ] || failed=1
done
exit $failed
