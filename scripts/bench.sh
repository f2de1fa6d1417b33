#!/usr/bin/env bash
# Runs palisade's benchmarks, then regenerates docs/benchmarks.md and its SVG
# plots (docs/benchmarks/*.svg) from the results they wrote: `just bench`.
#
# Usage: scripts/bench.sh [--quick] [--allow-missing] [STAGE...]
#
# Stages, run in this order (all of them when none is named):
#   stack      cargo bench -p palisade-bench --bench stack    (micro.json)
#   layers     cargo bench -p palisade-bench --bench layers   (layers.json)
#   loopback   --bin loopback                                 (loopback.json)
#   behaviour  --bin behaviour                                (behaviour.json)
#   memory     --bin memory                                   (memory.json)
#   bomb       --bin bomb: a 10 MB → 10 GiB gzip bomb's peak RSS (bomb.json)
#   redis      --bin redis_decisions; skipped with a warning without
#              redis-server, unless PALISADE_BENCH_REQUIRE_REDIS=1 (redis.json)
#   python     --bin pycompare; skipped with a warning without python3, unless
#              PALISADE_BENCH_REQUIRE_PYTHON=1                (python.json)
#   report     --bin report: docs/benchmarks.md from
#              crates/palisade-bench/report/benchmarks.md.in
#
# e.g. `scripts/bench.sh loopback report` re-measures loopback only and
# regenerates the page with the other results as they were (each figure's
# date is on the page). The report refuses to write anything while a figure
# the template asks for has no results; `--allow-missing` writes n/a instead.
#
# --quick: small workloads, for a smoke run of the whole pipeline in a few
# minutes. Its results go to target/palisade-bench/quick-results and its
# page to target/palisade-bench/quick/benchmarks.md (never docs/), with
# --allow-missing (behaviour --quick writes no results).
#
# Everything is built with `-p palisade-bench`: a workspace build would
# enable tokio's test-util, which slows every timer the benchmarks measure.
# The machine's load skews absolute figures; the page quotes ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
}

ALL_STAGES=(stack layers loopback behaviour memory bomb redis python report)
quick=0
allow_missing=0
stages=()
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        --allow-missing) allow_missing=1 ;;
        -h | --help) usage; exit 0 ;;
        stack | layers | loopback | behaviour | memory | bomb | redis | python | report) stages+=("$arg") ;;
        *) echo "bench.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
    esac
done
if [ ${#stages[@]} -eq 0 ]; then
    stages=("${ALL_STAGES[@]}")
fi

wants() {
    local s
    for s in "${stages[@]}"; do
        if [ "$s" = "$1" ]; then return 0; fi
    done
    return 1
}

report_args=()
if [ "$quick" = 1 ]; then
    export PALISADE_BENCH_RESULTS="${PALISADE_BENCH_RESULTS:-$PWD/target/palisade-bench/quick-results}"
    report_args+=(--out target/palisade-bench/quick/benchmarks.md --allow-missing)
fi
if [ "$allow_missing" = 1 ]; then
    report_args+=(--allow-missing)
fi

# One stage: prints the command, runs it with its output visible.
run() {
    echo
    echo "==> $*"
    "$@"
}

# `cargo run --release -p palisade-bench --bin NAME -- ARGS...`
bin() {
    local name="$1"
    shift
    run cargo run --release -p palisade-bench --bin "$name" -- "$@"
}

skipped=()

if wants stack; then
    if [ "$quick" = 1 ]; then
        run cargo bench -p palisade-bench --bench stack -- --warm-up-time 0.1 --measurement-time 0.3
    else
        run cargo bench -p palisade-bench --bench stack -- --warm-up-time 1 --measurement-time 2
    fi
fi

if wants layers; then
    if [ "$quick" = 1 ]; then
        PALISADE_BENCH_ROUNDS=3 PALISADE_BENCH_CALLS=2000 \
            run cargo bench -p palisade-bench --bench layers
    else
        run cargo bench -p palisade-bench --bench layers
    fi
fi

if wants loopback; then
    if [ "$quick" = 1 ]; then
        bin loopback --requests 5000 --rounds 2
    else
        bin loopback
    fi
fi

if wants behaviour; then
    if [ "$quick" = 1 ]; then
        bin behaviour --quick
    else
        bin behaviour
    fi
fi

if wants memory; then
    if [ "$quick" = 1 ]; then
        bin memory --mib 64 --rounds 1 --requests 50000
    else
        bin memory
    fi
fi

if wants bomb; then
    if [ "$quick" = 1 ]; then
        bin bomb --gib 1
    else
        bin bomb
    fi
fi

if wants redis; then
    if command -v redis-server >/dev/null 2>&1; then
        if [ "$quick" = 1 ]; then
            bin redis_decisions --rounds 1 --secs 0.5
        else
            bin redis_decisions
        fi
    elif [ "${PALISADE_BENCH_REQUIRE_REDIS:-0}" = 1 ]; then
        echo "bench.sh: redis-server not found and PALISADE_BENCH_REQUIRE_REDIS=1" >&2
        exit 1
    else
        echo
        echo "bench.sh: warning: redis-server not found: skipping redis_decisions" >&2
        skipped+=(redis)
    fi
fi

if wants python; then
    if command -v python3 >/dev/null 2>&1; then
        if [ "$quick" = 1 ]; then
            bin pycompare --rounds 1 --requests 2000 --burst 200
        else
            bin pycompare --rounds 3 --requests 5000
        fi
    elif [ "${PALISADE_BENCH_REQUIRE_PYTHON:-0}" = 1 ]; then
        echo "bench.sh: python3 not found and PALISADE_BENCH_REQUIRE_PYTHON=1" >&2
        exit 1
    else
        echo
        echo "bench.sh: warning: python3 not found: skipping pycompare" >&2
        skipped+=(python)
    fi
fi

if wants report; then
    if [ ${#skipped[@]} -gt 0 ]; then
        echo "bench.sh: skipped: ${skipped[*]}; the report uses their previous results, if any" >&2
    fi
    bin report "${report_args[@]}"
fi
