// Mock Flevum gateway for developing and testing the page without the Rust server: serves
// web/dist (SPA paths → index.html), the JSON endpoints of CONTRACTS.md, the fan WebSocket
// (snapshot, then one delta per tick, interleaved alert frames, ?resume=epoch:tick) and the alerts
// feed (JSON, SSE with Last-Event-ID, WebSocket) for one simulated race "demo" and one finished
// race "archive". Not a model of the engine: riders, groups and alerts are plausible, not real.
//
// Env: PORT (default 8787, 0 = any; prints "listening on http://HOST:PORT"), HOST (127.0.0.1),
// MOCK_TICK_MS (wall ms per tick, 1000), MOCK_SPEEDUP (race seconds per wall second, 10),
// MOCK_TILE_URL / MOCK_TILE_ATTRIBUTION (tile layer for /v1/config), DIST (dist dir).
import { createServer } from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join, normalize, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
const DIST = process.env.DIST ?? join(here, '..', 'dist');
const PORT = Number(process.env.PORT ?? 8787);
const HOST = process.env.HOST ?? '127.0.0.1';
const TICK_MS = Number(process.env.MOCK_TICK_MS ?? 1000);
const SPEEDUP = Number(process.env.MOCK_SPEEDUP ?? 10);
const EPOCH = Date.now() % 1_000_000_000;

// ---------- deterministic pseudo-random ----------
let seed = 42;
function rnd() {
  seed = (seed * 1664525 + 1013904223) % 4294967296;
  return seed / 4294967296;
}

// ---------- course ----------
const CENTER = [52.45, 5.45]; // lat, lon (Flevoland)
function makeCourse() {
  const pts = [];
  const n = 240;
  for (let i = 0; i <= n; i++) {
    const a = (i / n) * Math.PI * 2;
    const r = 0.12 + 0.025 * Math.sin(a * 5) + 0.012 * Math.cos(a * 11);
    pts.push([CENTER[1] + r * 1.6 * Math.cos(a), CENTER[0] + r * Math.sin(a)]); // [lon, lat]
  }
  const cum = [0];
  for (let i = 1; i < pts.length; i++) cum.push(cum[i - 1] + haversine(pts[i - 1], pts[i]));
  return { line: pts, cum, length: cum[cum.length - 1] };
}
function haversine([lon1, lat1], [lon2, lat2]) {
  const R = 6371000;
  const dLat = ((lat2 - lat1) * Math.PI) / 180;
  const dLon = ((lon2 - lon1) * Math.PI) / 180;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos((lat1 * Math.PI) / 180) * Math.cos((lat2 * Math.PI) / 180) * Math.sin(dLon / 2) ** 2;
  return 2 * R * Math.asin(Math.sqrt(a));
}
const course = makeCourse();
function pointAt(d) {
  d = ((d % course.length) + course.length) % course.length;
  let lo = 0;
  let hi = course.cum.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (course.cum[mid] <= d) lo = mid;
    else hi = mid;
  }
  const t = (d - course.cum[lo]) / (course.cum[hi] - course.cum[lo] || 1);
  const [a, b] = [course.line[lo], course.line[hi]];
  return { lon: a[0] + (b[0] - a[0]) * t, lat: a[1] + (b[1] - a[1]) * t };
}
const eleAt = (d) => 20 + 180 * Math.max(0, Math.sin((d / course.length) * Math.PI * 3)) ** 2 + 15 * Math.sin(d / 900);
const elevation = [];
for (let d = 0; d <= course.length; d += 250) elevation.push([Math.round(d), Math.round(eleAt(d) * 10) / 10]);
const checkpoints = [
  { name: 'Sprint Lelystad', f: 0.25 },
  { name: 'KOM Flevoberg', f: 0.5 },
  { name: 'Feed zone', f: 0.7 },
  { name: 'Finish', f: 0.999 },
].map(({ name, f }) => ({ name, distanceM: Math.round(course.length * f), ...pointAt(course.length * f) }));

// ---------- riders ----------
const NAMES = ['Anna de Vries', 'Bram Jansen', 'Chloé Martin', 'Dario Rossi', 'Eva Müller', 'Finn Larsen', 'Greta Berg', 'Hugo Lefèvre', 'Ines Costa', 'Jonas Weber', 'Kai Nakamura', 'Lena Novak', 'Mats Visser', 'Nora Smit', 'Oskar Lind', 'Pia Keller', 'Quinn Murphy', 'Rosa Bakker', 'Sven Olsen', 'Tess Peeters', 'Ugo Bianchi', 'Vera Kovač', 'Wout Claes', 'Xenia Popova', 'Yara Haddad', 'Zeno Ricci', 'Ada Horvat', 'Ben Mertens', 'Cas Dekker', 'Dana Wolff'];
const TEAMS = ['Polder Racing', 'Dijk Cycling', 'Flevo Pro', 'Windmill CT', 'Zuiderzee'];
const riders = NAMES.map((name, i) => ({ riderId: i + 1, bib: String(11 + i * 3), name, team: TEAMS[i % TEAMS.length] }));
const START_MS = Date.now() - 60_000;
const sim = riders.map((r, i) => ({
  id: r.riderId,
  d: i < 3 ? 900 - i * 40 : i < 24 ? 300 - (i - 3) * 6 : 150 - (i - 24) * 60,
  base: i < 3 ? 11.6 : i < 24 ? 11.3 : 10.6 + rnd() * 0.4,
  speed: 11,
  status: 'racing',
  battery: 60 + Math.floor(rnd() * 40),
  stoppedFor: 0,
}));

let tick = 0;
let timeMs = Date.now();
let alertSeq = 0;
const alertLog = [];
const deltas = []; // last deltas for resume
let groups = [];
const tracks = new Map(riders.map((r) => [r.riderId, []]));
const last = new Map();

function computeViews() {
  const order = [...sim].sort((a, b) => b.d - a.d);
  const leader = order[0];
  const views = new Map();
  order.forEach((s, i) => {
    const p = pointAt(s.d);
    const ahead = order[i - 1];
    const gapMs = (x) => Math.round(((x - s.d) / 11.2) * 1000);
    views.set(s.id, {
      riderId: s.id,
      lat: p.lat,
      lon: p.lon,
      distanceM: Math.round(s.d * 10) / 10,
      speedKmh: Math.round(s.speed * 3.6 * 10) / 10,
      rank: i + 1,
      gapToLeaderMs: i === 0 ? 0 : gapMs(leader.d),
      gapToAheadMs: i === 0 ? null : gapMs(ahead.d),
      groupId: null,
      status: s.status,
      lastFixMs: timeMs - Math.floor(rnd() * 3000),
      etaFinishMs: timeMs + Math.round(((course.length * 3 - s.d) / Math.max(1, s.speed)) * 1000),
      batteryPct: s.battery,
    });
  });
  // groups: split where the time gap to the rider ahead exceeds 8 s
  const gs = [];
  for (const s of order) {
    const v = views.get(s.id);
    if (!gs.length || v.gapToAheadMs > 8000) gs.push([s.id]);
    else gs[gs.length - 1].push(s.id);
  }
  const biggest = gs.reduce((m, g, i) => (g.length > gs[m].length ? i : m), 0);
  groups = gs.map((ids, i) => {
    const head = views.get(ids[0]);
    const kind = i === biggest ? 'peloton' : ids.length === 1 && i > biggest ? 'stragglers' : i < biggest ? 'breakaway' : 'chasers';
    const prevTail = i > 0 ? views.get(gs[i - 1][gs[i - 1].length - 1]) : null;
    return {
      groupId: Math.min(...ids) * 100 + (kind === 'peloton' ? 1 : 0),
      kind,
      riders: ids,
      headDistanceM: head.distanceM,
      gapToAheadMs: prevTail ? head.gapToLeaderMs - prevTail.gapToLeaderMs : null,
      gapToLeaderMs: head.gapToLeaderMs,
    };
  });
  for (const g of groups) for (const id of g.riders) views.get(id).groupId = g.groupId;
  return views;
}

function makeAlert(kind, ridersInvolved, severity) {
  const lead = Math.max(...sim.map((s) => s.d));
  const a = {
    seq: ++alertSeq,
    epoch: EPOCH,
    timeMs,
    raceTimeMs: timeMs - START_MS,
    courseKm: Math.round((lead % course.length) / 100) / 10,
    riders: ridersInvolved,
    severity,
    kind,
  };
  alertLog.push(a);
  if (alertLog.length > 1000) alertLog.shift();
  return a;
}

function randomAlert() {
  const pick = () => sim[Math.floor(rnd() * sim.length)].id;
  const g = groups[Math.floor(rnd() * groups.length)] ?? { groupId: 1, riders: [1] };
  const options = [
    () => makeAlert({ type: 'breakaway_formed', group_id: g.groupId, gap_ms: 15000 + Math.floor(rnd() * 60000) }, g.riders.slice(0, 4), 'notable'),
    () => makeAlert({ type: 'gap_changed', group_id: g.groupId, threshold_ms: 30000, gap_ms: 31000 + Math.floor(rnd() * 9000), growing: rnd() > 0.5 }, [], 'info'),
    () => makeAlert({ type: 'dropped_from_group', group_id: g.groupId }, [pick()], 'info'),
    () => makeAlert({ type: 'low_battery', battery_pct: 9 }, [pick()], 'info'),
    () => makeAlert({ type: 'checkpoint_leader', checkpoint: checkpoints[Math.floor(rnd() * 3)].name }, [groups[0]?.riders[0] ?? 1], 'notable'),
    () => {
      const id = pick();
      const s = sim.find((x) => x.id === id);
      s.stoppedFor = 6;
      return makeAlert({ type: 'rider_stopped' }, [id], 'notable');
    },
    () => makeAlert({ type: 'possible_crash' }, [pick(), pick()].filter((v, i, a) => a.indexOf(v) === i), 'critical'),
    () => makeAlert({ type: 'leader_changed', previous: pick() }, [groups[0]?.riders[0] ?? 1], 'notable'),
    () => makeAlert({ type: 'off_course', offset_m: 80 + Math.round(rnd() * 200) }, [pick()], 'notable'),
    () => makeAlert({ type: 'signal_lost' }, [pick()], 'info'),
  ];
  return options[Math.floor(rnd() * options.length)]();
}

function step() {
  tick++;
  timeMs += TICK_MS * SPEEDUP / 1; // event time advances SPEEDUP × wall time
  const dt = (TICK_MS / 1000) * SPEEDUP;
  for (const s of sim) {
    if (s.stoppedFor > 0) {
      s.stoppedFor--;
      s.speed = 0;
      s.status = 'stopped';
      continue;
    }
    s.status = 'racing';
    s.speed = Math.max(6, s.base + (rnd() - 0.5) * 1.2);
    s.d += s.speed * dt;
  }
  const views = computeViews();
  const changed = [];
  for (const [id, v] of views) {
    changed.push(v);
    last.set(id, v);
    const tr = tracks.get(id);
    tr.push([v.lon, v.lat, Math.round(eleAt(v.distanceM % course.length)), timeMs, v.distanceM]);
    if (tr.length > 2000) tr.shift();
  }
  const alerts = [];
  if (tick === 1) alerts.push(makeAlert({ type: 'race_started' }, [], 'info'));
  else if (tick % 4 === 0) alerts.push(randomAlert());
  const delta = { frame: 'delta', raceId: 'demo', epoch: EPOCH, tick, timeMs, states: changed, groups, alerts };
  deltas.push(delta);
  if (deltas.length > 300) deltas.shift();
  const text = JSON.stringify(delta);
  for (const c of liveClients) if (c.readyState === 1) c.send(text);
  for (const a of alerts) broadcastAlert(a);
  // an extra alert outside the tick, as an `alert` frame
  if (tick % 7 === 3) {
    const a = makeAlert({ type: 'signal_regained' }, [sim[Math.floor(rnd() * sim.length)].id], 'info');
    const f = JSON.stringify({ frame: 'alert', ...a });
    for (const c of liveClients) if (c.readyState === 1) c.send(f);
    broadcastAlert(a);
  }
}

function snapshot() {
  return {
    frame: 'snapshot',
    raceId: 'demo',
    raceName: 'Ronde van Flevoland (mock)',
    epoch: EPOCH,
    tick,
    timeMs,
    startMs: START_MS,
    course: { name: 'Flevoland loop', lengthM: course.length, ascentM: 410, line: course.line, checkpoints },
    riders,
    states: [...last.values()],
    groups,
    recentAlerts: alertLog.slice(-20),
  };
}

// prime state
const init = computeViews();
for (const [id, v] of init) last.set(id, v);

// ---------- finished race "archive": final snapshot only ----------
const archive = {
  frame: 'snapshot',
  raceId: 'archive',
  raceName: 'Zuiderzee Classic (finished, mock)',
  epoch: 7,
  tick: 4000,
  timeMs: START_MS - 86_400_000 + 3 * 3_600_000,
  startMs: START_MS - 86_400_000,
  course: { name: 'Flevoland loop', lengthM: course.length, ascentM: 410, line: course.line, checkpoints },
  riders,
  states: riders.map((r, i) => {
    const p = pointAt(course.length * 0.999);
    return { riderId: r.riderId, lat: p.lat, lon: p.lon, distanceM: course.length, speedKmh: 0, rank: i + 1, gapToLeaderMs: i * 4000, gapToAheadMs: i ? 4000 : null, groupId: null, status: 'finished', lastFixMs: START_MS - 86_400_000 + 3 * 3_600_000, etaFinishMs: null, batteryPct: 40 };
  }),
  groups: [],
  recentAlerts: [],
};

// Tracks of the finished race: everyone rides the loop once at their own pace.
const archiveTracks = new Map(
  riders.map((r, i) => {
    const v = course.length / (2.5 * 3_600_000 + i * 4000); // m per ms
    const pts = [];
    for (let k = 0; k <= 180; k++) {
      const t = archive.startMs + k * 60_000;
      const d = Math.min(course.length * 0.999, v * (t - archive.startMs));
      const p = pointAt(d);
      pts.push([p.lon, p.lat, Math.round(eleAt(d)), t, Math.round(d)]);
    }
    return [r.riderId, pts];
  }),
);

// ---------- HTTP ----------
const raceList = () => [
  { id: 'demo', name: 'Ronde van Flevoland (mock)', sport: 'cycling', startMs: START_MS, visibility: 'public', status: 'live', riders: riders.length },
  { id: 'archive', name: 'Zuiderzee Classic (finished, mock)', sport: 'cycling', startMs: archive.startMs, visibility: 'public', status: 'finished', riders: riders.length },
];
const detail = (id) => ({
  id,
  name: raceList().find((r) => r.id === id).name,
  sport: 'cycling',
  startMs: id === 'demo' ? START_MS : archive.startMs,
  status: id === 'demo' ? 'live' : 'finished',
  course: { type: 'Feature', properties: { name: 'Flevoland loop' }, geometry: { type: 'LineString', coordinates: course.line } },
  lengthM: course.length,
  ascentM: 410,
  elevation,
  checkpoints,
  riders,
});

const TYPES = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.html': 'text/html; charset=utf-8', '.png': 'image/png', '.svg': 'image/svg+xml' };
const sseClients = new Set();
const alertWsClients = new Set();
const liveClients = new Set();

function broadcastAlert(a) {
  for (const res of sseClients) res.write(`id: ${a.seq}\nevent: alert\ndata: ${JSON.stringify(a)}\n\n`);
  const f = JSON.stringify({ frame: 'alert', ...a });
  for (const c of alertWsClients) if (c.readyState === 1) c.send(f);
}

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

function serveFile(res, file, cache) {
  if (!existsSync(file)) return json(res, 404, { error: 'not found' });
  res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': cache });
  res.end(readFileSync(file));
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  let m;
  if (p === '/healthz' || p === '/readyz') return json(res, 200, { ok: true });
  if (p === '/v1/config') return json(res, 200, { tileUrl: process.env.MOCK_TILE_URL ?? null, tileAttribution: process.env.MOCK_TILE_ATTRIBUTION ?? null });
  if (p === '/v1/races') return json(res, 200, raceList());
  if ((m = p.match(/^\/v1\/races\/([^/]+)(\/.*)?$/))) {
    const race = decodeURIComponent(m[1]);
    const sub = m[2] ?? '';
    if (race !== 'demo' && race !== 'archive') return json(res, 404, { error: 'unknown race' });
    if (sub === '') return json(res, 200, detail(race));
    if (sub === '/standings') return json(res, 200, (race === 'demo' ? [...last.values()] : archive.states).sort((a, b) => a.rank - b.rank));
    if (sub === '/groups') return json(res, 200, race === 'demo' ? groups : []);
    if (sub === '/splits') return json(res, 200, []);
    if (sub === '/alerts') {
      const since = Number(url.searchParams.get('since') ?? 0);
      const list = race === 'demo' ? alertLog : [];
      if ((req.headers.accept ?? '').includes('text/event-stream')) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        const from = Number(req.headers['last-event-id'] ?? since);
        for (const a of list) if (a.seq > from) res.write(`id: ${a.seq}\nevent: alert\ndata: ${JSON.stringify(a)}\n\n`);
        if (race === 'demo') sseClients.add(res);
        req.on('close', () => sseClients.delete(res));
        return;
      }
      return json(res, 200, list.filter((a) => a.seq > since));
    }
    if ((m = sub.match(/^\/riders\/(\d+)\/track$/))) {
      const tr = (race === 'demo' ? tracks : archiveTracks).get(Number(m[1]));
      if (!tr) return json(res, 404, { error: 'unknown rider' });
      return json(res, 200, {
        type: 'Feature',
        properties: { riderId: Number(m[1]), timesMs: tr.map((t) => t[3]), distancesM: tr.map((t) => t[4]) },
        geometry: { type: 'LineString', coordinates: tr.map((t) => [t[0], t[1], t[2]]) },
      });
    }
    return json(res, 404, { error: 'not found' });
  }
  if (p.startsWith('/assets/')) {
    const file = normalize(join(DIST, p));
    if (!file.startsWith(join(DIST, 'assets'))) return json(res, 404, { error: 'not found' });
    return serveFile(res, file, 'public, max-age=31536000, immutable');
  }
  if (p === '/' || /^\/races\/[^/]+(\/console)?\/?$/.test(p)) return serveFile(res, join(DIST, 'index.html'), 'no-cache');
  return json(res, 404, { error: 'not found' });
});

const wss = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://x');
  const m = url.pathname.match(/^\/v1\/races\/([^/]+)\/(live|alerts)$/);
  if (!m) return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => {
    const race = decodeURIComponent(m[1]);
    if (race !== 'demo' && race !== 'archive') return ws.close(4004, 'unknown race');
    if (m[2] === 'alerts') {
      if (race === 'demo') alertWsClients.add(ws);
      ws.on('close', () => alertWsClients.delete(ws));
      return;
    }
    ws.on('message', () => {}); // follow/viewport/encoding accepted and ignored
    if (race === 'archive') return ws.send(JSON.stringify(archive));
    const resume = url.searchParams.get('resume');
    let resumed = false;
    if (resume) {
      const [e, t] = resume.split(':').map(Number);
      const idx = deltas.findIndex((d) => d.tick === t + 1);
      if (e === EPOCH && (t === tick || idx >= 0)) {
        for (const d of deltas.slice(idx >= 0 ? idx : deltas.length)) ws.send(JSON.stringify(d));
        resumed = true;
      }
    }
    if (!resumed) ws.send(JSON.stringify(snapshot()));
    liveClients.add(ws);
    ws.on('close', () => liveClients.delete(ws));
  });
});

server.listen(PORT, HOST, () => {
  const addr = server.address();
  console.log(`listening on http://${HOST}:${addr.port}`);
});
const timer = setInterval(step, TICK_MS);
function shutdown() {
  clearInterval(timer);
  for (const c of [...liveClients, ...alertWsClients]) c.terminate();
  for (const r of sseClients) r.end();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
