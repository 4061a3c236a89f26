#!/usr/bin/env bash
# Side-by-side fan-out: Flevum's gateway vs a Node.js `ws` relay, same fan swarm, one run.
#
# 1. `flevum serve` (release, load-tests/server.toml) with 200 driven riders; FANS fans
#    (`flevum-load fans`, PROCS worker processes) on Flevum's `/v1/races/{race}/live` directly.
# 2. The same swarm on bench/peers/ws_node/server.js: the Node server opens ONE upstream WebSocket
#    to Flevum's live feed of the race and rebroadcasts each message to all its fans (ws's
#    broadcast example); the fans connect with `flevum-load fans --fans-gateway 127.0.0.1:8090`.
# Prints frames/s delivered, tick→receive p50/p99, server CPU per million frames and RSS per fan
# for both, and the ratios. The Node path has one extra hop (Flevum → relay → fans): the relay's
# upstream leg (tick → relay receive) is printed beside it.
#
# Installs Node.js from Debian if missing and `ws` from npm (pinned by package-lock.json).
# Sizes via env: FANS (5000), PROCS (2), RIDERS (200), DURATION (30), CONNECT_RATE (1500),
# TICK_MS (engine tick, 1000 as load-tests/server.toml; lower it for more frames per fan).
# Needs ../shared/data/real (or /work/shared/data/real). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
FANS=${FANS:-5000}
PROCS=${PROCS:-2}
RIDERS=${RIDERS:-200}
DURATION=${DURATION:-30}
CONNECT_RATE=${CONNECT_RATE:-1500}
TICK_MS=${TICK_MS:-1000}
RELAY_PORT=${RELAY_PORT:-8090}
OUT=${OUT:-$ROOT/target/side_by_side/ws}
COURSE=${COURSE:-$ROOT/../shared/data/real/course_ragbrai_day4_gravel_128km.gpx}
[ -f "$COURSE" ] || COURSE=/work/shared/data/real/course_ragbrai_day4_gravel_128km.gpx
mkdir -p "$OUT"

command -v node >/dev/null || { apt-get update -q && apt-get install -y -q nodejs npm; }
command -v curl >/dev/null || { apt-get update -q && apt-get install -y -q curl; }
(cd bench/peers/ws_node && npm ci --no-audit --no-fund --silent)
cargo build --release -q -p flevum -p flevum-load
BIN=$ROOT/target/release
export FLEVUM_ADMIN_TOKEN=${FLEVUM_ADMIN_TOKEN:-load-test-admin-token-0123456789}

SERVER_PID= RELAY_PID= JOURNAL=
cleanup() {
    [ -n "$RELAY_PID" ] && { kill "$RELAY_PID" 2>/dev/null || true; wait "$RELAY_PID" 2>/dev/null || true; }
    [ -n "$SERVER_PID" ] && { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
    [ -n "$JOURNAL" ] && rm -rf "$JOURNAL"
    return 0
}
trap cleanup EXIT

# Same start as load-tests/run-all.sh's start_server.
JOURNAL=$(mktemp -d /tmp/flevum-peers-journal.XXXXXX)
LOG=$OUT/server.log
sed "s/^tick_ms = .*/tick_ms = $TICK_MS/" load-tests/server.toml >"$JOURNAL/server.toml"
FLEVUM_JOURNAL_DIR=$JOURNAL/journal "$BIN/flevum" serve --config "$JOURNAL/server.toml" >"$LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
    grep -q "certificate sha256" "$LOG" 2>/dev/null && curl -sf http://127.0.0.1:8080/readyz >/dev/null && break
    sleep 0.1
done
curl -sf http://127.0.0.1:8080/readyz >/dev/null || { echo "server did not start; see $LOG" >&2; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
swarm() { # name, race, extra args…
    local name=$1 race=$2; shift 2
    echo "== $name: flevum-load fans --race $race --fans $FANS --procs $PROCS $*" >&2
    "$BIN/flevum-load" fans --server-log "$LOG" --course "$COURSE" --race "$race" \
        --fans "$FANS" --procs "$PROCS" --drive-riders "$RIDERS" --duration-s "$DURATION" \
        --connect-rate "$CONNECT_RATE" "$@" --out "$OUT/$name.json" >"$OUT/$name.txt"
}

echo "fans $FANS (procs $PROCS), riders $RIDERS, tick $TICK_MS ms, window $DURATION s"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

# 1. Flevum directly.
f0=$(cpu_ticks "$SERVER_PID")
swarm flevum peer-flevum --server-pid "$SERVER_PID"
f1=$(cpu_ticks "$SERVER_PID")

# 2. Node ws relay fed by Flevum (one upstream connection).
node bench/peers/ws_node/server.js --port "$RELAY_PORT" --upstream 127.0.0.1:8080 2>"$OUT/relay.log" &
RELAY_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$RELAY_PORT/readyz" >/dev/null && break; sleep 0.1; done
r0=$(cpu_ticks "$RELAY_PID")
s0=$(cpu_ticks "$SERVER_PID")
swarm ws peer-ws --fans-gateway "127.0.0.1:$RELAY_PORT" --server-pid "$RELAY_PID"
r1=$(cpu_ticks "$RELAY_PID")
s1=$(cpu_ticks "$SERVER_PID")
curl -sf "http://127.0.0.1:$RELAY_PORT/stats" >"$OUT/relay-stats.json"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
head -1 "$OUT/relay.log"

python3 - "$OUT" "$(getconf CLK_TCK)" "$f0" "$f1" "$r0" "$r1" "$s0" "$s1" <<'EOF'
import json, sys
out, hz = sys.argv[1], float(sys.argv[2])
f0, f1, r0, r1, s0, s1 = (float(x) / hz for x in sys.argv[3:9])
fl = json.load(open(f"{out}/flevum.json"))
ws = json.load(open(f"{out}/ws.json"))
relay = json.load(open(f"{out}/relay-stats.json"))

def row(rep):
    r, l = rep["results"], rep["latency_ms"]["tick_to_receive"]
    return r, l

def frames_total(rep):
    # The CPU window spans the whole `flevum-load fans` run (connect, snapshots, window, drain):
    # frames delivered are counted only in the window, so CPU per frame is an upper bound.
    return rep["results"]["frames_per_s"] * rep["results"]["window_s"]

(fr, fl_l), (wr, ws_l) = row(fl), row(ws)
print(f"{'':34}{'flevum':>14}{'node ws relay':>16}")
for label, a, b in [
    ("fans connected", fr["fans_connected"], wr["fans_connected"]),
    ("connect errors", fr["connect_errors"], wr["connect_errors"]),
    ("frames/s delivered", fr["frames_per_s"], wr["frames_per_s"]),
    ("deltas/s delivered", fr["deltas_per_s"], wr["deltas_per_s"]),
    ("bytes/s delivered", fr["bytes_per_s"], wr["bytes_per_s"]),
    ("tick→receive p50 ms", fl_l["p50"], ws_l["p50"]),
    ("tick→receive p99 ms", fl_l["p99"], ws_l["p99"]),
    ("tick→receive max ms", fl_l["max"], ws_l["max"]),
    ("resyncs / 4008 closes", f'{fr["resyncs"]}/{fr["byte_budget_closes"]}', f'{wr["resyncs"]}/{wr["byte_budget_closes"]}'),
    ("server RSS per fan KiB", fr.get("server_rss_per_connection_kib"), wr.get("server_rss_per_connection_kib")),
    ("fan-out process CPU s (whole run)", round(f1 - f0, 1), round(r1 - r0, 1)),
]:
    print(f"{label:34}{str(a):>14}{str(b):>16}")
print(f"relay's upstream leg (tick → relay receive): p50 {relay['upstreamLeg']['p50Ms']} ms, p99 {relay['upstreamLeg']['p99Ms']} ms over {relay['upstreamLeg']['count']} deltas")
print(f"flevum CPU during the relay run (engine + ingest + 1 upstream fan): {s1 - s0:.1f} s")
cf = (f1 - f0) / max(frames_total(fl), 1) * 1e6
cw = (r1 - r0) / max(frames_total(ws), 1) * 1e6
print(f"CPU s per million frames delivered: flevum {cf:.1f} (incl. its engine and ingest), node relay {cw:.1f} (relay only)")
print(f"ratio frames/s flevum/ws: {fr['frames_per_s'] / max(wr['frames_per_s'], 1):.2f}x "
      f"(offered load: both deliver every tick to every fan when they keep up)")
print(f"ratio frames per CPU-second flevum/ws: {cw / cf:.2f}x")
print(f"ratio tick→receive p99 ws/flevum: {ws_l['p99'] / max(fl_l['p99'], 1e-9):.2f}x "
      f"(the ws figure includes the extra hop Flevum → relay, p50/p99 above)")
EOF
