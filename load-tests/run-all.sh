#!/usr/bin/env bash
# Runs every load scenario of issue 8 against a fresh `flevum serve` (release build, throwaway
# journal with fsync on) and appends the tables to bench/RESULTS.md. The server and the load
# client run as separate processes on this machine (loopback only).
#
# Usage: load-tests/run-all.sh [scenario…]   (default: all; sizes via env, see below)
# Scenarios: udp devices storm blip saturate saturate-few fans fansidle fans2 e2e recovery
#            fans-split e2e-split (scaled out: nats-server, `flevum engine --bus`, two
#            `flevum gateway --bus`; not in the default set)
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
# storm/blip: simulated devices per shared QUIC endpoint (1 = a UDP socket per device, far more
# client CPU on the server's 2 vCPUs) and what the blip is (cut = network cut, the clients resume
# their TLS sessions with 0-RTT; restart = new clients, full handshakes).
PER_ENDPOINT=${PER_ENDPOINT:-64}
BLIP_MODE=${BLIP_MODE:-cut}
SAT_DEVICES=${SAT_DEVICES:-2000}
FANS=${FANS:-15000}
FANS2=${FANS2:-20000}
E2E_RIDERS=${E2E_RIDERS:-2000}
E2E_FANS=${E2E_FANS:-10000}
RECOVERY_FIXES=${RECOVERY_FIXES:-10000000}
FANS_SPLIT=${FANS_SPLIT:-20000}            # fans-split: total over the two gateways
SPLIT_RIDERS=${SPLIT_RIDERS:-200}
SPLIT_S=${SPLIT_S:-30}
E2E_SPLIT_RIDERS=${E2E_SPLIT_RIDERS:-500}
E2E_SPLIT_FANS=${E2E_SPLIT_FANS:-2000}
# Loopback ports of the split layout (apart from serve's 8080/4433).
NATS_PORT=${NATS_PORT:-14222}
SPLIT_INGEST=${SPLIT_INGEST:-127.0.0.1:14433}
SPLIT_GW_A=${SPLIT_GW_A:-127.0.0.1:18081}
SPLIT_GW_B=${SPLIT_GW_B:-127.0.0.1:18082}
# Loopback addresses of `flevum serve` (change them when another server holds 8080/4433).
GATEWAY_ADDR=${GATEWAY_ADDR:-127.0.0.1:8080}
INGEST_ADDR=${INGEST_ADDR:-127.0.0.1:4433}
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
    FLEVUM_JOURNAL_DIR=$JOURNAL/journal FLEVUM_GATEWAY_LISTEN=$GATEWAY_ADDR \
        FLEVUM_INGEST_LISTEN=$INGEST_ADDR "$BIN/flevum" serve --config load-tests/server.toml \
        >"$LOG" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        grep -q "certificate sha256" "$LOG" 2>/dev/null && curl -sf "http://$GATEWAY_ADDR/readyz" >/dev/null && return 0
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

# The scaled-out layout: nats-server, one `flevum engine --bus` (ingest, journal) and two
# `flevum gateway --bus` (HTTP/WebSocket), all with load-tests/server.toml plus env overrides.
NATS_PID= ENGINE_PID= GW_A_PID= GW_B_PID=
start_split() { # name
    stop_server
    stop_split
    JOURNAL=$(mktemp -d /tmp/flevum-load-journal.XXXXXX)
    nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$OUT/nats-$1.log" 2>&1 &
    NATS_PID=$!
    local bus=nats://127.0.0.1:$NATS_PORT
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break
        sleep 0.1
    done
    LOG=$OUT/engine-$1.log
    FLEVUM_JOURNAL_DIR=$JOURNAL/journal FLEVUM_INGEST_LISTEN=$SPLIT_INGEST \
        "$BIN/flevum" engine --bus "$bus" --config load-tests/server.toml >"$LOG" 2>&1 &
    ENGINE_PID=$!
    FLEVUM_GATEWAY_LISTEN=$SPLIT_GW_A "$BIN/flevum" gateway --bus "$bus" \
        --config load-tests/server.toml >"$OUT/gw-a-$1.log" 2>&1 &
    GW_A_PID=$!
    FLEVUM_GATEWAY_LISTEN=$SPLIT_GW_B "$BIN/flevum" gateway --bus "$bus" \
        --config load-tests/server.toml >"$OUT/gw-b-$1.log" 2>&1 &
    GW_B_PID=$!
    for _ in $(seq 200); do
        grep -q "certificate sha256" "$LOG" 2>/dev/null &&
            curl -sf "http://$SPLIT_GW_A/readyz" >/dev/null &&
            curl -sf "http://$SPLIT_GW_B/readyz" >/dev/null && return 0
        sleep 0.1
    done
    echo "split layout did not start; see $OUT/{nats,engine,gw-a,gw-b}-$1.log" >&2
    exit 1
}
stop_split() {
    local p
    for p in $GW_A_PID $GW_B_PID $ENGINE_PID $NATS_PID; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ -n "$ENGINE_PID" ]; then rm -rf "$JOURNAL"; fi
    NATS_PID= ENGINE_PID= GW_A_PID= GW_B_PID=
}
# Resident memory and CPU time of the split layout's processes and of the load clients given
# as `name pid` pairs (a table for the report).
split_ps() {
    echo "process  pid  rss_kib  cpu_time"
    local pairs=(nats "$NATS_PID" engine "$ENGINE_PID" gw-a "$GW_A_PID" gw-b "$GW_B_PID" "$@") i
    for ((i = 0; i < ${#pairs[@]}; i += 2)); do
        echo "${pairs[i]} $(ps -o pid=,rss=,time= -p "${pairs[i+1]}" 2>/dev/null || echo "${pairs[i+1]} gone")"
    done
}
# The gateways' WebSocket and bus counters (refusals, denials, resyncs, timeouts).
split_metrics() {
    local gw
    for gw in "$SPLIT_GW_A" "$SPLIT_GW_B"; do
        echo "gateway $gw:"
        curl -sf "http://$gw/metrics" | grep -E '^flevum_(gateway_(ws_|viewer_denied)|bus_)' |
            grep -v -E '_bucket|quantile' || true
    done
}
trap 'stop_server; stop_split' EXIT

common() { echo --server-log "$LOG" --server-pid "$SERVER_PID" --course "$COURSE" --gateway "$GATEWAY_ADDR" --ingest "$INGEST_ADDR"; }

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
            --duration-s 20 --ramp 0 --drain-s 60 --devices-per-endpoint "$PER_ENDPOINT" ;;
    blip)
        start_server blip
        name=blip-$STORM
        [ "$BLIP_MODE" = cut ] || name=$name-$BLIP_MODE
        run "$name" devices $(common) --race blip --devices "$STORM" --interval-ms 1000 \
            --duration-s 40 --ramp 10 --blip 25 --blip-mode "$BLIP_MODE" --drain-s 60 \
            --devices-per-endpoint "$PER_ENDPOINT" ;;
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
    fans-split)
        # FANS_SPLIT fans, half on each gateway, each half in its own flevum-load process; the
        # first process drives the riders (engine ingest) and measures gateway A, the second
        # starts once the race exists and measures gateway B.
        start_split fans-split
        half=$((FANS_SPLIT / 2))
        name=fans-split-$FANS_SPLIT
        [ "$SPLIT_RIDERS" = 200 ] || name=$name-riders$SPLIT_RIDERS
        split_common() { echo --server-log "$LOG" --ingest "$SPLIT_INGEST" --course "$COURSE" --race fans \
            --fans "$half" --duration-s "$SPLIT_S" --connect-rate "${SPLIT_RATE:-1000}"; }
        cmd_a="flevum-load fans $(split_common) --gateway $SPLIT_GW_A --server-pid $GW_A_PID --procs $(( (half + 18999) / 19000 )) --drive-riders $SPLIT_RIDERS"
        cmd_b="flevum-load fans $(split_common) --gateway $SPLIT_GW_B --server-pid $GW_B_PID --procs $(( (half + 18999) / 19000 )) --existing"
        # Both processes open their windows at the same wall-clock time (after connecting).
        export FLEVUM_LOAD_WINDOW_AT_MS=$(( $(date +%s%3N) + 1000 * ${SPLIT_WINDOW_DELAY_S:-$(( 2 * half / ${SPLIT_RATE:-1000} + 45 ))} ))
        echo "== $name: $cmd_a & $cmd_b (window at $FLEVUM_LOAD_WINDOW_AT_MS)" >&2
        "$BIN/"$cmd_a --out "$OUT/$name-a.json" >"$OUT/$name-a.txt" &
        pa=$!
        for _ in $(seq 300); do
            curl -sf "http://$SPLIT_GW_A/v1/races/fans" >/dev/null && break
            sleep 0.2
        done
        # Process A connects its fans ~4 s after creating the race (riders first).
        sleep 3
        "$BIN/"$cmd_b --out "$OUT/$name-b.json" >"$OUT/$name-b.txt" &
        pb=$!
        # The layout's memory and CPU time at the start and the end of the shared window.
        ( sleep $(( (FLEVUM_LOAD_WINDOW_AT_MS - $(date +%s%3N)) / 1000 + 1 ))
          { echo "window start:"; split_ps load-a "$pa" load-b "$pb"; } >"$OUT/$name-ps.txt"
          sleep $(( SPLIT_S - 2 ))
          { echo "window end:"; split_ps load-a "$pa" load-b "$pb"; split_metrics; } >>"$OUT/$name-ps.txt" ) &
        psj=$!
        wait $pa || echo "fans A exited $?" >&2
        wait $pb || echo "fans B exited $?" >&2
        wait $psj || true
        unset FLEVUM_LOAD_WINDOW_AT_MS
        {
            echo "# gateway A ($SPLIT_GW_A, pid $GW_A_PID)"; cat "$OUT/$name-a.txt"
            echo "# gateway B ($SPLIT_GW_B, pid $GW_B_PID)"; cat "$OUT/$name-b.txt"
            echo "# processes (ps: resident KiB, cumulative CPU time)"; cat "$OUT/$name-ps.txt"
        } >"$OUT/$name.txt"
        cat "$OUT/$name.txt"
        section "$name" "" "$cmd_a & $cmd_b   (split: nats-server, flevum engine --bus, 2 × flevum gateway --bus)"
        stop_split ;;
    e2e-split)
        # Device-send → fan-receive through NATS: riders into the engine, fans on gateway A.
        start_split e2e-split
        name=e2e-split-${E2E_SPLIT_RIDERS}x$E2E_SPLIT_FANS${E2E_REORDER:+-reorder$E2E_REORDER}
        ( sleep $(( E2E_SPLIT_FANS / 1500 + 25 )); { split_ps; split_metrics; } >"$OUT/$name-ps.txt" ) &
        psj=$!
        run "$name" e2e --server-log "$LOG" --server-pid "$GW_A_PID" --course "$COURSE" \
            --ingest "$SPLIT_INGEST" --gateway "$SPLIT_GW_A" --race e2e \
            --riders "$E2E_SPLIT_RIDERS" --fans "$E2E_SPLIT_FANS" --probes 20 \
            ${E2E_REORDER:+--reorder-window-ms $E2E_REORDER} --viewport empty --follow 5 \
            --riders-view "$E2E_SPLIT_RIDERS" --duration-s 30 --connect-rate 1500
        wait $psj || true
        { echo; echo "processes mid-window (ps):"; echo '```'; cat "$OUT/$name-ps.txt"; echo '```'; } >>"$RESULTS"
        stop_split ;;
    recovery)
        stop_server
        run recovery recovery --fixes "$RECOVERY_FIXES" --riders 200 --course "$COURSE" ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
    esac
done
stop_server
