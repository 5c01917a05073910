#!/usr/bin/env bash
# Generate step-curve markets with `bcte market gen` and clear each with `bcte clear` and with
# HiGHS in the same run, printing one table row per market (docs/BENCHMARKS.md, "Market engine").
#
# Usage: tools/highs/run.sh [RUNS]    (from the repository root; default 5 runs per side)
# Needs: `cargo build --release -p bcte`, and `pip install highspy numpy`.
set -euo pipefail
runs="${1:-5}"
bcte="${BCTE:-target/release/bcte}"
python="${PYTHON:-python3}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

first=1
for size in "10000 250" "100000 2500" "1000000 25000"; do
    set -- $size
    market="$dir/steps-$1.json"
    "$bcte" market gen --steps --bids "$1" --nodes "$2" --levels 3 --seed 1 --congestion 0.1 -o "$market"
    if [ "$first" = 1 ]; then
        "$python" tools/highs/compare.py "$market" --bcte "$bcte" --runs "$runs"
        first=0
    else
        "$python" tools/highs/compare.py "$market" --bcte "$bcte" --runs "$runs" | tail -n 1
    fi
done
