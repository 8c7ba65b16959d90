#!/usr/bin/env bash
# Terminal captures for docs/captures/: what a user sees, in a real terminal (tmux) at 80 and 120 columns,
# and piped. Runs the demo once in a temporary folder, then each command there.
#   bash scripts/captures.sh            # writes docs/captures/*.txt (run from the clone, venv in .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$PWD/.venv/bin/python}
OUT=$PWD/docs/captures
WORK=$(mktemp -d)
trap 'tmux kill-server 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
(cd "$WORK" && "$PY" -m aslhpc.demo --per-class 12 >/dev/null 2>&1)

capture() {  # capture NAME COMMAND...: tmux at 80 and 120 columns, then piped
    local name=$1; shift
    local cmd="cd $WORK && $* ; tmux wait-for -S done"
    for width in 80 120; do
        local session="cap-$name-$width"
        tmux new-session -d -x "$width" -y 200 -s "$session" "bash --norc --noprofile"
        tmux send-keys -t "$session" "clear; $cmd" Enter
        timeout 600 tmux wait-for done
        tmux capture-pane -t "$session" -p -S - -E - | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' \
            | grep -v '^bash-[0-9.]*[#$] *$' > "$OUT/$name-$width.txt"
        tmux kill-session -t "$session"
    done
    (cd "$WORK" && eval "$*" > "$OUT/$name-piped.txt" 2>&1 || true)
}

capture help "$PY -m aslhpc --help"
capture status "$PY -m aslhpc status --results demo/results --experiment smoke"
capture collect "$PY -m aslhpc collect --results demo/results --experiment smoke --no-plots"
capture dry-run "$PY -m aslhpc submit --dry-run --cluster local --data demo/asl --results demo/dry"
capture logs "$PY -m aslhpc status --results demo/results --experiment smoke --logs \$(ls demo/results/smoke/cells | head -1)"
capture cancel "$PY -m aslhpc cancel --results demo/results --experiment smoke"
# a usage error is one line naming the flag as typed, then the next command's
capture usage-errors "$PY -m aslhpc submit --gpus 1,x --dry-run; $PY -m aslhpc train --data demo/asl --epochs 2.5; \
$PY -m aslhpc status --bogus; $PY -m aslhpc collect --reference --reference-only"
capture demo "rm -rf d2 && $PY -m aslhpc demo --per-class 12 --dir d2"
echo "captures in $OUT"
ls "$OUT"
