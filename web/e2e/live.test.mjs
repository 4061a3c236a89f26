// End-to-end browser test of the page (node --test, playwright-core driving /usr/bin/chromium).
// Server under test: FLEVUM_URL if set; else `$FLEVUM_BIN serve --demo` with FLEVUM_GATEWAY_LISTEN and
// FLEVUM_INGEST_LISTEN on free local ports (waits for /readyz), a temporary journal folder and an
// organiser token of the test's own, with which it makes the finished race for the replay case;
// else the mock server (mock/server.mjs).
// Screenshots go to e2e/artifacts/ (gitignored). CHROMIUM overrides the browser path.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = join(here, 'artifacts');
const CHROME = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let base;
let server; // child process, if we started one
let startServer; // () => child process, when the test owns the server (for the restart check)
let allowNetErrors = false; // set while the server is deliberately down
let context;
let userDataDir;
let dataDir; // the owned server's journal and uploads, removed at the end
let adminToken; // the owned server's organiser token (set through FLEVUM_ADMIN_TOKEN)
const consoleErrors = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitReady(url, child, ms = 60_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (child && child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} not ready after ${ms} ms`);
}

function pipeLog(child, name) {
  child.stdout.on('data', (d) => process.env.E2E_VERBOSE && process.stderr.write(`[${name}] ${d}`));
  child.stderr.on('data', (d) => process.env.E2E_VERBOSE && process.stderr.write(`[${name}] ${d}`));
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  if (process.env.FLEVUM_URL) {
    base = process.env.FLEVUM_URL.replace(/\/$/, '');
  } else if (process.env.FLEVUM_BIN) {
    const http = await freePort();
    const ingest = await freePort();
    dataDir = mkdtempSync(join(tmpdir(), 'flevum-e2e-data-'));
    adminToken = `e2e-admin-${process.pid}-${Date.now()}`;
    startServer = () => {
      const child = spawn(process.env.FLEVUM_BIN, ['serve', '--demo'], {
        env: {
          ...process.env,
          FLEVUM_GATEWAY_LISTEN: `127.0.0.1:${http}`,
          FLEVUM_INGEST_LISTEN: `127.0.0.1:${ingest}`,
          FLEVUM_JOURNAL_DIR: join(dataDir, 'journal'),
          FLEVUM_ADMIN_TOKEN: adminToken,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      pipeLog(child, 'flevum');
      return child;
    };
    server = startServer();
    base = `http://127.0.0.1:${http}`;
  } else {
    const port = await freePort();
    startServer = () => {
      const child = spawn(process.execPath, [join(here, '..', 'mock', 'server.mjs')], {
        env: { ...process.env, PORT: String(port), MOCK_TICK_MS: '1000', MOCK_SPEEDUP: '10' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      pipeLog(child, 'mock');
      return child;
    };
    server = startServer();
    base = `http://127.0.0.1:${port}`;
  }
  await waitReady(`${base}/readyz`, server);
  userDataDir = mkdtempSync(join(tmpdir(), 'flevum-e2e-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROME,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
  });
});

async function stopServer() {
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  const t = setTimeout(() => server.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

after(async () => {
  await context?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  await stopServer();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function newPage(viewport) {
  const page = await context.newPage();
  if (viewport) await page.setViewportSize(viewport);
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // While the server is down on purpose, Chromium itself logs the refused connections.
    if (allowNetErrors && /ERR_CONNECTION_REFUSED|WebSocket connection to .* failed|Failed to load resource/.test(m.text())) return;
    consoleErrors.push(`${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
  return page;
}

/** Picks a live race from the list page, returns its path. */
async function firstRacePath() {
  const page = await newPage();
  await page.goto(`${base}/`);
  const link = page.locator('[data-testid="race-link"]').first();
  await link.waitFor({ timeout: 15_000 });
  const links = await page.locator('[data-testid="race-link"]').evaluateAll((as) =>
    as.map((a) => ({ href: a.getAttribute('href'), live: a.closest('li')?.className.includes('status-live') ?? false })),
  );
  await page.close();
  const pick = links.find((l) => l.live) ?? links[0];
  return pick.href.split('?')[0];
}

let racePath;

test('race list has a race link', async () => {
  racePath = await firstRacePath();
  assert.match(racePath, /^\/races\/[^/]+$/);
});

test('live view: riders appear and move, leaderboard, alerts, follow', async () => {
  const page = await newPage();
  await page.goto(`${base}${racePath}`);
  await page.locator('[data-testid="connection-state"][data-state="live"]').waitFor({ timeout: 30_000 });
  const dots = page.locator('[data-testid="rider-dot"]');
  await dots.first().waitFor({ timeout: 30_000 });
  const n = await dots.count();
  assert.ok(n > 0, 'no rider dots');

  // Zoom in so that even real-time speeds move dots by whole pixels.
  for (let i = 0; i < 3; i++) {
    await page.locator('.leaflet-control-zoom-in').click();
    await page.waitForTimeout(350);
  }
  const positions = () =>
    dots.evaluateAll((els) =>
      Object.fromEntries(
        els.map((e) => {
          const r = e.getBoundingClientRect();
          return [e.getAttribute('data-rider-id'), [r.x, r.y]];
        }),
      ),
    );
  await page.screenshot({ path: join(ARTIFACTS, 'live-1.png') });
  const p1 = await positions();
  await page.waitForTimeout(6000);
  await page.screenshot({ path: join(ARTIFACTS, 'live-2.png') });
  const p2 = await positions();
  const moved = Object.keys(p1).filter((id) => p2[id] && Math.hypot(p2[id][0] - p1[id][0], p2[id][1] - p1[id][1]) >= 1);
  assert.ok(moved.length > 0, `no rider dot moved (of ${Object.keys(p1).length})`);

  // Leaderboard rows for the riders on the map.
  const rowIds = await page.locator('[data-testid="leaderboard-row"]').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-rider-id')));
  assert.ok(rowIds.length >= n, `leaderboard has ${rowIds.length} rows for ${n} dots`);
  for (const id of Object.keys(p2)) assert.ok(rowIds.includes(id), `rider ${id} has no leaderboard row`);

  // An alert in the ticker within 60 s.
  await page.locator('[data-testid="alert-item"]').first().waitFor({ timeout: 60_000 });

  // Follow by clicking a leaderboard row (not the first, to be sure it is the click that counts).
  const row = page.locator('[data-testid="leaderboard-row"]').nth(Math.min(2, rowIds.length - 1));
  const id = await row.getAttribute('data-rider-id');
  await row.locator('td').nth(2).click();
  await page.locator(`[data-testid="rider-dot"][data-rider-id="${id}"][data-followed="true"]`).waitFor({ timeout: 5_000 });
  assert.equal(await page.locator('[data-testid="rider-dot"][data-followed="true"]').count(), 1);
  await page.waitForTimeout(1200);
  await page.screenshot({ path: join(ARTIFACTS, 'live-followed.png') });

  // Following by clicking a dot moves the highlight to that rider.
  const other = rowIds.find((r) => r !== id);
  await page.locator(`[data-testid="rider-dot"][data-rider-id="${other}"]`).dispatchEvent('click');
  await page.locator(`[data-testid="rider-dot"][data-rider-id="${other}"][data-followed="true"]`).waitFor({ timeout: 5_000 });
  assert.equal(await page.locator(`[data-testid="rider-dot"][data-rider-id="${id}"]`).getAttribute('data-followed'), 'false');
  await page.close();
});

test('live view at phone size', async () => {
  const page = await newPage({ width: 390, height: 844 });
  await page.goto(`${base}${racePath}`);
  await page.locator('[data-testid="rider-dot"]').first().waitFor({ timeout: 30_000 });
  await page.locator('[data-testid="leaderboard-row"]').first().waitFor({ timeout: 10_000 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `page scrolls horizontally by ${overflow}px at 390 wide`);
  await page.screenshot({ path: join(ARTIFACTS, 'live-phone.png'), fullPage: true });
  await page.close();
});

test('console shows alerts and focuses a rider from an alert', async () => {
  const page = await newPage();
  await page.goto(`${base}${racePath}/console`);
  await page.locator('[data-testid="alert-item"]').first().waitFor({ timeout: 60_000 });
  const withRider = page.locator('[data-testid="alert-item"] .alert-riders button').first();
  await withRider.waitFor({ timeout: 60_000 });
  await withRider.click();
  await page.locator('[data-testid="rider-detail"]').waitFor({ timeout: 5_000 });

  // Severity filter: "Critical only" leaves only critical alerts (or none).
  await page.selectOption('#f-sev', 'critical');
  const sevs = await page.locator('[data-testid="alert-item"]').evaluateAll((els) => els.map((e) => e.getAttribute('data-severity')));
  assert.ok(sevs.every((x) => x === 'critical'), `non-critical alerts shown: ${sevs}`);
  await page.selectOption('#f-sev', 'info');
  await page.waitForTimeout(1500);
  await page.screenshot({ path: join(ARTIFACTS, 'console.png') });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(ARTIFACTS, 'console-phone.png'), fullPage: true });
  await page.close();
});

test('live view reconnects after a server restart without a page reload', { skip: !process.env.FLEVUM_URL ? false : 'server not owned by the test' }, async () => {
  const page = await newPage();
  await page.goto(`${base}${racePath}`);
  const state = page.locator('[data-testid="connection-state"]');
  await page.locator('[data-testid="connection-state"][data-state="live"]').waitFor({ timeout: 30_000 });
  await page.locator('[data-testid="rider-dot"]').first().waitFor({ timeout: 30_000 });
  await page.evaluate(() => {
    window.__sameDocument = true;
  });
  allowNetErrors = true;
  await stopServer();
  await page.locator('[data-testid="connection-state"][data-state="reconnecting"]').waitFor({ timeout: 15_000 });
  server = startServer();
  await waitReady(`${base}/readyz`, server);
  await page.locator('[data-testid="connection-state"][data-state="live"]').waitFor({ timeout: 30_000 });
  allowNetErrors = false;
  assert.equal(await page.evaluate(() => window.__sameDocument === true), true, 'page was reloaded');
  assert.equal(await state.getAttribute('data-state'), 'live');
  await page.locator('[data-testid="rider-dot"]').first().waitFor({ timeout: 30_000 });
  await page.close();
});

/** POSTs an organiser command as JSON; returns the parsed answer, throws on an HTTP error. */
async function admin(path, body) {
  const r = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  assert.equal(r.status, 200, `${path}: ${text}`);
  return JSON.parse(text);
}

/**
 * Makes a finished race on the owned server the way an organiser and riders would: creates it
 * through the organiser API on the demo course (started an hour ago), issues each rider a device
 * token, sends 40 fixes a rider through the OsmAnd ingest (riders at different speeds), waits
 * until the tracks hold them, then finishes the race. Returns the race id.
 */
async function makeFinishedRace() {
  const gpx = readFileSync(join(here, '..', '..', 'configs', 'courses', 'flevum_demo.gpx'), 'utf8');
  const points = [...gpx.matchAll(/<trkpt lat="([-0-9.]+)" lon="([-0-9.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
  assert.ok(points.length > 100, 'demo course has a track');
  const id = `e2e-finished-${Date.now()}`;
  const start = Date.now() - 3_600_000;
  const riders = [1, 2, 3];
  const toml = [
    `id = "${id}"`, 'name = "E2E Finished"', 'sport = "road_cycling"', `start_ms = ${start}`, `course = "${id}.gpx"`,
    ...riders.flatMap((r) => ['', '[[riders]]', `id = ${r}`, `bib = "${r}"`, `name = "Rider ${r}"`, `device_id = "e2e-${r}"`]),
  ].join('\n');
  await admin('/v1/admin/races', { action: 'create_race', config_toml: toml, gpx });
  // Positions along the course: cumulative distances of the track points, then interpolation.
  const rad = Math.PI / 180;
  const dist = (a, b) => {
    const x = (b[1] - a[1]) * rad * Math.cos(((a[0] + b[0]) / 2) * rad);
    return 6371000 * Math.hypot(x, (b[0] - a[0]) * rad);
  };
  const cum = [0];
  for (let i = 1; i < points.length; i++) cum.push(cum[i - 1] + dist(points[i - 1], points[i]));
  const at = (d) => {
    let i = 1;
    while (i < points.length - 1 && cum[i] < d) i++;
    const f = Math.min(1, Math.max(0, (d - cum[i - 1]) / (cum[i] - cum[i - 1] || 1)));
    return [points[i - 1][0] + f * (points[i][0] - points[i - 1][0]), points[i - 1][1] + f * (points[i][1] - points[i - 1][1])];
  };
  for (const r of riders) {
    const { token } = await admin(`/v1/admin/races/${id}/tokens`, { rider_id: r });
    const speed = 8 + r; // m/s
    for (let k = 0; k < 40; k++) {
      const [lat, lon] = at(speed * 10 * k);
      const q = new URLSearchParams({ id: token, lat: lat.toFixed(6), lon: lon.toFixed(6), timestamp: String(Math.floor(start / 1000) + 10 * k), speed: String(speed / 0.514444), accuracy: '5' });
      const res = await fetch(`${base}/v1/ingest/osmand?${q}`, { method: 'POST' });
      assert.equal(res.status, 200, `fix ${k} of rider ${r}: ${await res.text()}`);
    }
  }
  // The fixes are acknowledged once journaled; a tick applies them.
  const until = Date.now() + 30_000;
  for (;;) {
    const counts = await Promise.all(
      riders.map(async (r) => {
        const track = await (await fetch(`${base}/v1/races/${id}/riders/${r}/track`)).json();
        return track.geometry?.coordinates?.length ?? 0;
      }),
    );
    if (counts.every((c) => c >= 40)) break;
    assert.ok(Date.now() < until, `tracks not filled: ${counts}`);
    await new Promise((res) => setTimeout(res, 250));
  }
  await admin(`/v1/admin/races/${id}`, { action: 'finish' });
  return id;
}

test('finished race: replay slider scrubs rider positions', async (t) => {
  const races = await (await fetch(`${base}/v1/races`)).json();
  let fin = races.find((r) => r.status === 'finished');
  if (!fin && adminToken) {
    const id = await makeFinishedRace();
    const listed = await (await fetch(`${base}/v1/races`)).json();
    fin = listed.find((r) => r.id === id);
    assert.equal(fin?.status, 'finished', `the race list shows ${id} finished`);
  }
  if (!fin) return t.skip('no finished race on this server, and no organiser token to make one');
  const page = await newPage();
  await page.goto(`${base}/races/${encodeURIComponent(fin.id)}`);
  await page.locator('[data-testid="rider-dot"]').first().waitFor({ timeout: 30_000 });
  const slider = page.locator('.replay-slider');
  await page.waitForFunction(() => Number(document.querySelector('.replay-slider')?.getAttribute('max') ?? 0) > 10, null, { timeout: 30_000 });
  const pos = () => page.locator('[data-testid="rider-dot"]').first().evaluate((e) => e.getBoundingClientRect().x + ',' + e.getBoundingClientRect().y);
  await slider.evaluate((el) => {
    el.value = String(Math.floor(Number(el.max) / 4));
    el.dispatchEvent(new Event('input', { bubbles: true }));
  });
  const a = await pos();
  await slider.evaluate((el) => {
    el.value = String(Math.floor(Number(el.max) / 2));
    el.dispatchEvent(new Event('input', { bubbles: true }));
  });
  const b = await pos();
  assert.notEqual(a, b, 'scrubbing did not move the riders');
  await page.screenshot({ path: join(ARTIFACTS, 'replay.png') });
  await page.close();
});

test('no console errors', () => {
  assert.deepEqual(consoleErrors, []);
});
