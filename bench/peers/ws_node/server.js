// Peer of Flevum's fan-out for bench/peers/run_ws_node.sh: a Node.js `ws` server that serves
// `/v1/races/{race}/live` like Flevum's gateway, but as a plain relay. For each race asked by a
// fan it opens ONE upstream WebSocket to Flevum's live feed of that race and rebroadcasts every
// message it receives to all its own fans of that race (the broadcast pattern of ws's README).
//
// It does not render frames itself (no race logic, no viewports/follows: fan commands are
// ignored); it keeps the last upstream snapshot and sends it to a fan on connect. A fan whose
// send buffer exceeds BUDGET bytes is closed with 4008, like Flevum's byte budget.
//
// Usage: node server.js [--port 8090] [--upstream 127.0.0.1:8080] [--budget 4194304]
// GET /stats → JSON: fans, upstream frames, broadcasts, upstream leg (delta timeMs → relay
// receive) p50/p99 ms, so that the extra hop can be told apart from the relay's own fan-out.
'use strict';

const http = require('http');
const { WebSocket, WebSocketServer } = require('ws');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const port = Number(arg('port', '8090'));
const upstream = arg('upstream', '127.0.0.1:8080');
const budget = Number(arg('budget', String(4 * 1024 * 1024)));

/** race id → { fans: Set<WebSocket>, snapshot: Buffer|null, upstream: WebSocket } */
const races = new Map();
const stats = { upstreamFrames: 0, sends: 0, budgetCloses: 0, upstreamLegMs: [] };

function race(id) {
  let r = races.get(id);
  if (r) return r;
  r = { fans: new Set(), snapshot: null, upstream: null };
  races.set(id, r);
  connectUpstream(id, r);
  return r;
}

function connectUpstream(id, r) {
  const up = new WebSocket(`ws://${upstream}/v1/races/${encodeURIComponent(id)}/live`);
  r.upstream = up;
  up.on('message', (data, isBinary) => {
    const now = Date.now();
    stats.upstreamFrames++;
    if (!isBinary) {
      // Frames start with {"frame":"snapshot"|"delta"|"alert"; only peek at the head.
      const head = data.toString('latin1', 0, Math.min(data.length, 400));
      if (head.startsWith('{"frame":"snapshot"')) {
        r.snapshot = data;
      } else if (head.startsWith('{"frame":"delta"')) {
        const m = /"timeMs":(-?\d+)/.exec(head);
        if (m && stats.upstreamLegMs.length < 5_000_000) stats.upstreamLegMs.push(now - Number(m[1]));
      }
    }
    // ws README "broadcast to all connected clients".
    for (const fan of r.fans) {
      if (fan.readyState !== WebSocket.OPEN) continue;
      if (fan.bufferedAmount > budget) {
        stats.budgetCloses++;
        fan.close(4008, 'byte budget exceeded');
        continue;
      }
      fan.send(data, { binary: isBinary });
      stats.sends++;
    }
  });
  up.on('close', () => {
    // Reconnect after a short pause while fans still watch; the fresh snapshot follows.
    setTimeout(() => {
      if (r.fans.size > 0) connectUpstream(id, r);
      else races.delete(id);
    }, 500);
  });
  up.on('error', (e) => console.error(`upstream ${id}: ${e.message}`));
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const server = http.createServer((req, res) => {
  if (req.url === '/stats') {
    const legs = Float64Array.from(stats.upstreamLegMs).sort();
    let fans = 0;
    for (const r of races.values()) fans += r.fans.size;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      fans,
      upstreamFrames: stats.upstreamFrames,
      sends: stats.sends,
      budgetCloses: stats.budgetCloses,
      upstreamLeg: { count: legs.length, p50Ms: percentile(legs, 0.5), p99Ms: percentile(legs, 0.99) },
    }));
    return;
  }
  if (req.url === '/readyz') {
    res.writeHead(200);
    res.end('ok');
    return;
  }
  res.writeHead(404);
  res.end();
});

// Same buffer sizes policy as the defaults; no per-message deflate (Flevum sends uncompressed).
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
server.on('upgrade', (req, socket, head) => {
  const m = /^\/v1\/races\/([^/?]+)\/live(\?.*)?$/.exec(req.url || '');
  if (!m) {
    socket.write('HTTP/1.1 404 Not Found\r\n\r\n');
    socket.destroy();
    return;
  }
  const id = decodeURIComponent(m[1]);
  wss.handleUpgrade(req, socket, head, (ws) => {
    const r = race(id);
    r.fans.add(ws);
    if (r.snapshot) ws.send(r.snapshot, { binary: false });
    ws.on('message', () => {}); // follow/viewport/encoding commands: not supported by the relay
    ws.on('close', () => r.fans.delete(ws));
    ws.on('error', () => r.fans.delete(ws));
  });
});

server.listen(port, '127.0.0.1', () => {
  console.error(`ws relay on 127.0.0.1:${port}, upstream ${upstream}, ws ${require('ws/package.json').version}, node ${process.version}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
