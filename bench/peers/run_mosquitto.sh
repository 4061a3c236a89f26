#!/usr/bin/env bash
# Side-by-side ingest: Flevum (QUIC, journal fsync before ack) vs Mosquitto (MQTT QoS 1, acks from
# memory), same N devices, 1 position/s each of 32 bytes, same ramp and duration, one run.
#
# 1. `flevum serve` (release, load-tests/server.toml, fsync on) and `flevum-load devices` with N
#    devices (each its own QUIC connection): accepted positions/s, device push → durable ack.
# 2. Mosquitto on 127.0.0.1:$MQTT_PORT (persistence off, its default) and
#    bench/peers/mqtt_node/mqtt_load.js: N MQTT clients (each its own TCP connection) publishing
#    at QoS 1, one subscriber on `flevum/pos/#` counting; accepted (PUBACKed) positions/s,
#    publish → PUBACK and publish → subscriber receive.
# Prints both with ratios, plus server CPU seconds per 1,000 accepted positions.
#
# Installs mosquitto (and Node.js if missing) from Debian and `mqtt` from npm (pinned by
# package-lock.json). Sizes via env: DEVICES (2000), DURATION (60), RAMP (20), DRAIN (30).
# Needs ../shared/data/real (or /work/shared/data/real). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DEVICES=${DEVICES:-2000}
DURATION=${DURATION:-60}
RAMP=${RAMP:-20}
DRAIN=${DRAIN:-30}
MQTT_PORT=${MQTT_PORT:-18830}
OUT=${OUT:-$ROOT/target/side_by_side/mqtt}
COURSE=${COURSE:-$ROOT/../shared/data/real/course_ragbrai_day4_gravel_128km.gpx}
[ -f "$COURSE" ] || COURSE=/work/shared/data/real/course_ragbrai_day4_gravel_128km.gpx
mkdir -p "$OUT"

if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
command -v node >/dev/null || { apt-get update -q && apt-get install -y -q nodejs npm; }
command -v curl >/dev/null || { apt-get update -q && apt-get install -y -q curl; }
(cd bench/peers/mqtt_node && npm ci --no-audit --no-fund --silent)
cargo build --release -q -p flevum -p flevum-load
BIN=$ROOT/target/release
export FLEVUM_ADMIN_TOKEN=${FLEVUM_ADMIN_TOKEN:-load-test-admin-token-0123456789}

SERVER_PID= BROKER_PID= JOURNAL=
stop() { [ -n "$1" ] && { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }; return 0; }
cleanup() { stop "$BROKER_PID"; stop "$SERVER_PID"; [ -n "$JOURNAL" ] && rm -rf "$JOURNAL"; return 0; }
trap cleanup EXIT
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

# 1. Flevum, started as load-tests/run-all.sh's start_server does.
JOURNAL=$(mktemp -d /tmp/flevum-peers-journal.XXXXXX)
LOG=$OUT/server.log
FLEVUM_JOURNAL_DIR=$JOURNAL/journal "$BIN/flevum" serve --config load-tests/server.toml >"$LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
    grep -q "certificate sha256" "$LOG" 2>/dev/null && curl -sf http://127.0.0.1:8080/readyz >/dev/null && break
    sleep 0.1
done
curl -sf http://127.0.0.1:8080/readyz >/dev/null || { echo "server did not start; see $LOG" >&2; exit 1; }
echo "== flevum-load devices --devices $DEVICES --duration-s $DURATION --ramp $RAMP" >&2
f0=$(cpu_ticks "$SERVER_PID")
"$BIN/flevum-load" devices --server-log "$LOG" --server-pid "$SERVER_PID" --course "$COURSE" \
    --race peer-ingest --devices "$DEVICES" --interval-ms 1000 --duration-s "$DURATION" \
    --ramp "$RAMP" --drain-s "$DRAIN" --out "$OUT/flevum.json" >"$OUT/flevum.txt"
f1=$(cpu_ticks "$SERVER_PID")
stop "$SERVER_PID"; SERVER_PID=
rm -rf "$JOURNAL"; JOURNAL=

# 2. Mosquitto.
cat >"$OUT/mosquitto.conf" <<EOF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
set_tcp_nodelay true
log_type error
log_type warning
EOF
"$MOSQUITTO" -c "$OUT/mosquitto.conf" >"$OUT/mosquitto.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$MQTT_PORT) 2>/dev/null && break; sleep 0.1; done
echo "== mqtt_load.js --clients $DEVICES --duration-s $DURATION --ramp-s $RAMP" >&2
b0=$(cpu_ticks "$BROKER_PID")
node bench/peers/mqtt_node/mqtt_load.js --url "mqtt://127.0.0.1:$MQTT_PORT" --clients "$DEVICES" \
    --interval-ms 1000 --duration-s "$DURATION" --ramp-s "$RAMP" --drain-s "$DRAIN" >"$OUT/mqtt.txt"
b1=$(cpu_ticks "$BROKER_PID")
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "mosquitto $("$MOSQUITTO" -h 2>/dev/null | sed -n 's/^mosquitto version //p' | head -1); $(head -1 "$OUT/mqtt.txt")"

python3 - "$OUT" "$(getconf CLK_TCK)" "$f0" "$f1" "$b0" "$b1" <<'EOF'
import json, sys
out, hz = sys.argv[1], float(sys.argv[2])
f0, f1, b0, b1 = (float(x) / hz for x in sys.argv[3:7])
fl = json.load(open(f"{out}/flevum.json"))
mq = json.loads(next(l for l in open(f"{out}/mqtt.txt") if l.startswith("RESULT "))[7:])
fr, fa = fl["results"], fl["latency_ms"]["send_to_ack_live"]
print(f"{'':40}{'flevum (QUIC)':>16}{'mosquitto (MQTT)':>18}")
for label, a, b in [
    ("positions pushed", fr["fixes_pushed"], mq["pushed"]),
    ("positions acked (lost)", f'{fr["fixes_acked"]} ({fr["fixes_lost"]})', f'{mq["acked"]} ({mq["pushed"] - mq["acked"]})'),
    ("accepted positions/s (steady)", fr["accepted_fixes_per_s_steady"], mq["acceptedPerSSteady"]),
    ("push → ack p50 ms", fa["p50"], mq["pubToPuback"]["p50"]),
    ("push → ack p99 ms", fa["p99"], mq["pubToPuback"]["p99"]),
    ("push → ack max ms", fa["max"], mq["pubToPuback"]["max"]),
    ("publish → subscriber p50 / p99 ms", "-", f'{mq["pubToSub"]["p50"]} / {mq["pubToSub"]["p99"]}'),
    ("server CPU s (whole run)", round(f1 - f0, 1), round(b1 - b0, 1)),
    ("server CPU ms per 1,000 acked", round((f1 - f0) / max(fr["fixes_acked"], 1) * 1e6, 1), round((b1 - b0) / max(mq["acked"], 1) * 1e6, 1)),
]:
    print(f"{label:40}{str(a):>16}{str(b):>18}")
print(f"subscriber received {mq['subscriberReceived']} of {mq['acked']} acked")
print(f"ratio accepted/s flevum/mosquitto: {fr['accepted_fixes_per_s_steady'] / max(mq['acceptedPerSSteady'], 1e-9):.2f}x (offered load: {fr['offered_fixes_per_s']:.0f}/s)")
print(f"ratio ack p99 flevum/mosquitto: {fa['p99'] / max(mq['pubToPuback']['p99'], 1e-9):.2f}x "
      f"(flevum acks after the journal fsync, mosquitto acks from memory)")
print(f"ratio CPU per position flevum/mosquitto: {((f1 - f0) / max(fr['fixes_acked'], 1)) / max((b1 - b0) / max(mq['acked'], 1), 1e-12):.2f}x "
      f"(flevum also matches every fix to the course and runs the race tick)")
EOF
