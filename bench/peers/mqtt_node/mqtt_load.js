// MQTT half of bench/peers/run_mosquitto.sh: N publishers, each its own MQTT connection, publish
// one 32-byte position per interval at QoS 1 (the size of Flevum's PositionRecord), while one
// subscriber (a child process, QoS 1 on `flevum/pos/#`) counts what the broker delivers.
//
// Mirrors `flevum-load devices`: devices start spread over --ramp-s, send for --duration-s after
// the ramp, then wait up to --drain-s for the last PUBACKs. "Accepted" = PUBACKs received; the
// steady rate counts PUBACKs from the end of the ramp to the end of sending, as flevum-load does.
// Latencies: publish → PUBACK (publisher's clock) and publish → subscriber receive (wall clock
// with sub-ms resolution, same machine). Prints a table and a `RESULT {json}` line.
//
// Usage: node mqtt_load.js [--url mqtt://127.0.0.1:18830] [--clients 2000] [--interval-ms 1000]
//        [--duration-s 60] [--ramp-s 20] [--drain-s 30]
'use strict';

const { fork } = require('child_process');
const { performance } = require('perf_hooks');
const mqtt = require('mqtt');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const url = arg('url', 'mqtt://127.0.0.1:18830');
const wallMs = () => performance.timeOrigin + performance.now();
const TOPIC = 'flevum/pos';
const RECORD_BYTES = 32;

function percentiles(values) {
  const s = Float64Array.from(values).sort();
  const q = (p) => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : null);
  const r = (x) => (x === null ? null : Math.round(x * 100) / 100);
  return { count: s.length, p50: r(q(0.5)), p90: r(q(0.9)), p99: r(q(0.99)), p999: r(q(0.999)), max: r(s.length ? s[s.length - 1] : null) };
}

// ---- subscriber (child process) ----
if (process.argv.includes('--subscriber')) {
  const lat = [];
  let received = 0;
  let measuring = false;
  const sub = mqtt.connect(url, { clientId: 'flevum-peer-sub', clean: true, keepalive: 30, reconnectPeriod: 0 });
  sub.on('connect', () => {
    sub.subscribe(`${TOPIC}/#`, { qos: 1 }, (err) => {
      if (err) throw err;
      process.send({ ready: true });
    });
  });
  sub.on('message', (_topic, payload) => {
    const now = wallMs();
    received++;
    if (measuring && payload.length === RECORD_BYTES) lat.push(now - payload.readDoubleLE(8));
  });
  sub.on('error', (e) => console.error(`subscriber: ${e.message}`));
  process.on('message', (m) => {
    if (m.measure !== undefined) measuring = m.measure;
    if (m.report) {
      process.send({ received, pubToSub: percentiles(lat) });
      sub.end(true, () => process.exit(0));
    }
  });
  return;
}

// ---- publishers (main process) ----
const clients = Number(arg('clients', '2000'));
const intervalMs = Number(arg('interval-ms', '1000'));
const durationS = Number(arg('duration-s', '60'));
const rampS = Number(arg('ramp-s', '20'));
const drainS = Number(arg('drain-s', '30'));

const stats = { connected: 0, connectErrors: 0, pushed: 0, acked: 0, errors: 0 };
const pubAck = [];
let measuring = false;

function startPublisher(i, stopAt) {
  const c = mqtt.connect(url, {
    clientId: `flevum-peer-dev-${i}`, clean: true, keepalive: 10, reconnectPeriod: 1000, connectTimeout: 10_000,
  });
  const topic = `${TOPIC}/${i}`;
  let seq = 0;
  let timer = null;
  c.on('connect', () => {
    stats.connected++;
    if (timer) return;
    const send = () => {
      if (Date.now() >= stopAt) { clearInterval(timer); return; }
      seq++;
      // 32 bytes like PositionRecord: seq u32, device u32, send wall time f64 (ms), 16 bytes of
      // position-like payload.
      const b = Buffer.alloc(RECORD_BYTES);
      b.writeUInt32LE(seq, 0);
      b.writeUInt32LE(i, 4);
      const t = wallMs();
      b.writeDoubleLE(t, 8);
      b.writeInt32LE(389_000_000 + seq, 16);
      b.writeInt32LE(-1_200_000_000 - i, 20);
      stats.pushed++;
      const inWindow = measuring;
      c.publish(topic, b, { qos: 1 }, (err) => {
        if (err) { stats.errors++; return; }
        stats.acked++;
        if (inWindow) pubAck.push(wallMs() - t);
      });
    };
    send();
    timer = setInterval(send, intervalMs);
  });
  c.on('close', () => { stats.connected = Math.max(0, stats.connected - 1); });
  c.on('error', () => { stats.connectErrors++; });
  return c;
}

async function main() {
  const sub = fork(__filename, [...process.argv.slice(2), '--subscriber']);
  const subMsg = () => new Promise((res) => sub.once('message', res));
  await subMsg(); // ready
  const t0 = Date.now();
  const stopAt = t0 + (rampS + durationS) * 1000;
  const pubs = [];
  for (let i = 0; i < clients; i++) {
    const at = t0 + (rampS > 0 ? (rampS * 1000 * i) / clients : 0);
    setTimeout(() => pubs.push(startPublisher(i, stopAt)), at - Date.now());
  }
  const progress = setInterval(() => {
    console.error(`mqtt: connected ${stats.connected}/${clients} pushed ${stats.pushed} acked ${stats.acked} pending ${stats.pushed - stats.acked}`);
  }, 1000);
  await new Promise((r) => setTimeout(r, rampS * 1000));
  measuring = true;
  sub.send({ measure: true });
  const a0 = stats.acked;
  await new Promise((r) => setTimeout(r, durationS * 1000));
  const steady = (stats.acked - a0) / durationS;
  measuring = false;
  sub.send({ measure: false });
  const drainEnd = Date.now() + drainS * 1000;
  while (stats.acked + stats.errors < stats.pushed && Date.now() < drainEnd) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 500)); // last deliveries to the subscriber
  clearInterval(progress);
  sub.send({ report: true });
  const s = await subMsg();
  const result = {
    clients, intervalMs, durationS, rampS,
    pushed: stats.pushed, acked: stats.acked, publishErrors: stats.errors, connectErrors: stats.connectErrors,
    subscriberReceived: s.received,
    acceptedPerSSteady: Math.round(steady * 10) / 10,
    pubToPuback: percentiles(pubAck), pubToSub: s.pubToSub,
    mqttVersion: require('mqtt/package.json').version, node: process.version,
  };
  console.log(`mqtt.js ${result.mqttVersion}, ${clients} clients, QoS 1, ${RECORD_BYTES}-byte payloads every ${intervalMs} ms`);
  console.log(`pushed ${result.pushed} acked ${result.acked} (lost ${result.pushed - result.acked}), subscriber received ${result.subscriberReceived}`);
  console.log(`accepted positions/s (steady) ${result.acceptedPerSSteady}`);
  console.log(`publish→PUBACK ms  p50 ${result.pubToPuback.p50} p99 ${result.pubToPuback.p99} max ${result.pubToPuback.max}`);
  console.log(`publish→subscriber ms p50 ${result.pubToSub.p50} p99 ${result.pubToSub.p99} max ${result.pubToSub.max}`);
  console.log(`RESULT ${JSON.stringify(result)}`);
  for (const c of pubs) c.end(true);
  setTimeout(() => process.exit(0), 200);
}

main().catch((e) => { console.error(e); process.exit(1); });
