#!/usr/bin/env bash
# Runs every load scenario of issue 8 against a fresh `flevum serve` (release build, throwaway
# journal with fsync on) and appends the tables to bench/RESULTS.md. The server and the load
# client run as separate processes on this machine (loopback only).
#
# Usage: load-tests/run-all.sh [scenario…]   (default: all; sizes via env, see below)
# Scenarios: udp devices storm blip saturate saturate-few fans fansidle fans2 e2e recovery
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/load-tests/reports}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
mkdir -p "$OUT"

# Sizes (issue targets by default; lower them on a busy machine).
DEVICES=${DEVICES:-10000}
DEVICES_S=${DEVICES_S:-60}
STORM=${STORM:-10000}
SAT_DEVICES=${SAT_DEVICES:-2000}
FANS=${FANS:-15000}
FANS2=${FANS2:-20000}
E2E_RIDERS=${E2E_RIDERS:-2000}
E2E_FANS=${E2E_FANS:-10000}
RECOVERY_FIXES=${RECOVERY_FIXES:-10000000}
COURSE=${COURSE:-$ROOT/../shared/data/real/course_ragbrai_day4_gravel_128km.gpx}
[ -f "$COURSE" ] || COURSE=/work/shared/data/real/course_ragbrai_day4_gravel_128km.gpx

cargo build --release -p flevum -p flevum-load
BIN=$ROOT/target/release
export FLEVUM_ADMIN_TOKEN=${FLEVUM_ADMIN_TOKEN:-load-test-admin-token-0123456789}

SERVER_PID=
start_server() {
    stop_server
    JOURNAL=$(mktemp -d /tmp/flevum-load-journal.XXXXXX)
    LOG=$OUT/server-$1.log
    FLEVUM_JOURNAL_DIR=$JOURNAL/journal "$BIN/flevum" serve --config load-tests/server.toml \
        >"$LOG" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        grep -q "certificate sha256" "$LOG" 2>/dev/null && curl -sf http://127.0.0.1:8080/readyz >/dev/null && return 0
        sleep 0.1
    done
    echo "server did not start; see $LOG" >&2
    exit 1
}
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
        rm -rf "$JOURNAL"
    fi
}
trap stop_server EXIT

common() { echo --server-log "$LOG" --server-pid "$SERVER_PID" --course "$COURSE"; }

section() { # name, report json, command
    {
        echo
        echo "### $1 ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
        echo
        echo '```'
        echo "$3"
        echo '```'
        echo
        echo '```'
        cat "$OUT/$1.txt"
        echo '```'
    } >>"$RESULTS"
}

run() { # name, args…
    local name=$1; shift
    echo "== $name: flevum-load $*" >&2
    "$BIN/flevum-load" "$@" --out "$OUT/$name.json" | tee "$OUT/$name.txt"
    section "$name" "$OUT/$name.json" "flevum-load $*"
}

if ! grep -q "## Load tests (flevum-load)" "$RESULTS" 2>/dev/null; then
    {
        echo
        echo "## Load tests (flevum-load)"
        echo
        echo "Machine: $(lscpu | sed -n 's/^Model name: *//p') — $(nproc) vCPUs (KVM, shared), $(free -g | awk '/Mem:/{print $2}') GiB RAM; load client and server on the same machine."
    } >>"$RESULTS"
fi

SCEN=${*:-udp devices storm blip saturate fans e2e recovery}
for s in $SCEN; do
    case $s in
    udp) run udp-probe udp-probe --duration-s 5 ;;
    devices)
        start_server devices
        run devices-$DEVICES devices $(common) --race ingest --devices "$DEVICES" --interval-ms 1000 \
            --duration-s "$DEVICES_S" --ramp 20 --dropout-frac 0.02 --dropout-s 10 --drain-s 60 ;;
    storm)
        start_server storm
        run storm-$STORM devices $(common) --race storm --devices "$STORM" --interval-ms 1000 \
            --duration-s 20 --ramp 0 --drain-s 60 ;;
    blip)
        start_server blip
        run blip-$STORM devices $(common) --race blip --devices "$STORM" --interval-ms 1000 \
            --duration-s 40 --ramp 10 --blip 25 --drain-s 60 ;;
    saturate)
        start_server saturate
        run saturate saturate $(common) --race sat --devices "$SAT_DEVICES" --start-rate 2 \
            --factor 1.5 --step-s 10 --max-steps 12 --p99-limit-ms 50 --udp-probe-s 5 ;;
    saturate-few)
        start_server saturate-few
        run saturate-${SAT_FEW:-200}dev-p99-${SAT_P99:-50}ms saturate $(common) --race sat --devices "${SAT_FEW:-200}" \
            --start-rate "${SAT_START:-5}" --factor 1.5 --step-s 10 --max-steps 12 \
            --p99-limit-ms "${SAT_P99:-50}" --udp-probe-s 5 ;;
    fans)
        start_server fans
        run fans-$FANS fans $(common) --race fans --fans "$FANS" --procs 1 --drive-riders 200 \
            --duration-s 30 --connect-rate 1500 ;;
    fansidle)
        start_server fansidle
        run fansidle-$FANS fans $(common) --race idle --fans "$FANS" --procs 1 --drive-riders 0 \
            --duration-s 20 --connect-rate 1500 ;;
    fans2)
        start_server fans2
        run fans2-$FANS2 fans $(common) --race fans --fans "$FANS2" --procs 2 --drive-riders 200 \
            --duration-s 30 --connect-rate 1000 ;;
    e2e)
        start_server e2e
        run e2e-${E2E_RIDERS}x$E2E_FANS${E2E_REORDER:+-reorder$E2E_REORDER} e2e $(common) --race e2e \
            --riders "$E2E_RIDERS" --fans "$E2E_FANS" --probes 20 ${E2E_REORDER:+--reorder-window-ms $E2E_REORDER} \
            --viewport empty --follow 5 --riders-view "$E2E_RIDERS" --duration-s 30 --connect-rate 1500 ;;
    recovery)
        stop_server
        run recovery recovery --fixes "$RECOVERY_FIXES" --riders 200 --course "$COURSE" ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
    esac
done
stop_server
