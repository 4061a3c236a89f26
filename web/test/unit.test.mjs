// Unit tests of the page's pure modules (gap formatting, RaceStore frame handling and replay
// history, track parsing). Bundles the TypeScript with esbuild into a temp dir, then imports it.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const src = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');
let format, storeMod, tracks, alerts;

before(async () => {
  const out = mkdtempSync(join(tmpdir(), 'flevum-unit-'));
  await build({
    entryPoints: ['format.ts', 'store.ts', 'tracks.ts', 'alerts.ts'].map((f) => join(src, f)),
    outdir: out,
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    logLevel: 'error',
  });
  format = await import(pathToFileURL(join(out, 'format.js')).href);
  storeMod = await import(pathToFileURL(join(out, 'store.js')).href);
  tracks = await import(pathToFileURL(join(out, 'tracks.js')).href);
  alerts = await import(pathToFileURL(join(out, 'alerts.js')).href);
});

test('alertText: an organiser taking a finisher out, and putting them back', () => {
  const who = (id) => `#${id}`;
  const alert = (kind) => ({
    seq: 1, epoch: 1, timeMs: 0, raceTimeMs: 0, courseKm: 128, riders: [7], severity: 'notable', kind,
  });
  assert.equal(
    alerts.alertText(alert({ type: 'rider_abandoned', finish_position: 3 }), who),
    '#7 out of the race (was 3. at the finish: those behind move up)',
  );
  assert.equal(alerts.alertText(alert({ type: 'rider_abandoned', finish_position: null }), who), '#7 out of the race');
  assert.equal(
    alerts.alertText(alert({ type: 'rider_reinstated', finish_position: 2 }), who),
    '#7 back in the race (finishes 2.: those behind move down)',
  );
  assert.equal(alerts.alertText(alert({ type: 'rider_reinstated', finish_position: null }), who), '#7 back in the race');
});

test('formatGap', () => {
  assert.equal(format.formatGap(83_000), '+1:23');
  assert.equal(format.formatGap(5_400), '+0:05');
  assert.equal(format.formatGap(3_723_000), '+1:02:03');
  assert.equal(format.formatGap(0), '0:00');
  assert.equal(format.formatGap(null), '');
});

const rider = (id, d, extra = {}) => ({
  riderId: id, lat: 52 + d / 1e5, lon: 5, distanceM: d, speedKmh: 40, rank: 0, gapToLeaderMs: null,
  gapToAheadMs: null, groupId: null, status: 'racing', lastFixMs: 0, etaFinishMs: null, batteryPct: null, ...extra,
});
const alert = (seq, epoch = 1) => ({ seq, epoch, timeMs: seq, raceTimeMs: seq, courseKm: 0, riders: [1], severity: 'info', kind: { type: 'rider_stopped' } });
const snap = (epoch, tick, states, extra = {}) => ({
  frame: 'snapshot', raceId: 'r', raceName: 'R', epoch, tick, timeMs: tick * 1000, startMs: 0,
  course: { name: '', lengthM: 1, ascentM: 0, line: [], checkpoints: [] },
  riders: [{ riderId: 1, bib: '7', name: 'A', team: '' }, { riderId: 2, bib: '8', name: 'B', team: '' }],
  states, groups: [], recentAlerts: [], ...extra,
});
const delta = (epoch, tick, states, extra = {}) => ({ frame: 'delta', raceId: 'r', epoch, tick, timeMs: tick * 1000, states, groups: null, alerts: [], ...extra });

test('store applies deltas in order, reports gaps and other epochs, ignores duplicates', () => {
  const s = new storeMod.RaceStore();
  assert.equal(s.applyDelta(delta(1, 1, [])), 'gap', 'delta before any snapshot');
  s.applySnapshot(snap(1, 10, [rider(1, 100), rider(2, 50)]));
  assert.equal(s.resumeToken(), '1:10');
  assert.equal(s.applyDelta(delta(1, 11, [rider(1, 120)])), 'applied');
  assert.equal(s.states.get(1).distanceM, 120);
  assert.equal(s.states.get(2).distanceM, 50, 'unchanged riders keep their state');
  assert.equal(s.applyDelta(delta(1, 11, [rider(1, 999)])), 'ignored');
  assert.equal(s.states.get(1).distanceM, 120);
  assert.equal(s.applyDelta(delta(1, 13, [])), 'gap');
  assert.equal(s.applyDelta(delta(2, 12, [])), 'gap');
  assert.equal(s.resumeToken(), '1:11');
});

test('store deduplicates alerts by epoch:seq and keeps them in time order', () => {
  const s = new storeMod.RaceStore();
  s.applySnapshot(snap(1, 1, [], { recentAlerts: [alert(2), alert(1)] }));
  s.addAlerts([alert(2), alert(3), alert(1, 2)]);
  assert.deepEqual(s.alerts.map((a) => `${a.epoch}:${a.seq}`), ['1:1', '2:1', '1:2', '1:3']);
});

test('store replay reconstructs past states across keyframes; a new epoch resets history', () => {
  const s = new storeMod.RaceStore();
  s.applySnapshot(snap(1, 0, [rider(1, 0), rider(2, 0)]));
  for (let t = 1; t <= 120; t++) s.applyDelta(delta(1, t, [rider(1, t * 10)]));
  assert.equal(s.historyLength(), 121);
  assert.equal(s.stateAt(0).states.get(1).distanceM, 0);
  assert.equal(s.stateAt(77).states.get(1).distanceM, 770);
  assert.equal(s.stateAt(77).timeMs, 77_000);
  assert.equal(s.stateAt(120).states.get(1).distanceM, 1200);
  assert.equal(s.stateAt(77).states.get(2).distanceM, 0);
  s.applySnapshot(snap(2, 5, [rider(1, 1)]));
  assert.equal(s.historyLength(), 1);
});

test('store gap trend looks back in event time', () => {
  const s = new storeMod.RaceStore();
  const g = (gap) => [{ groupId: 9, kind: 'peloton', riders: [1], headDistanceM: 0, gapToAheadMs: gap, gapToLeaderMs: gap }];
  s.applySnapshot(snap(1, 0, [], { groups: g(10_000) }));
  for (let t = 1; t <= 40; t++) s.applyDelta(delta(1, t, [], { groups: g(10_000 + t * 1000) }));
  assert.equal(s.gapAgo(9, 30_000), 20_000);
  assert.equal(s.gapAgo(9, 60_000), undefined);
});

test('parseTrack reads GeoJSON with times and TrackPoint arrays', () => {
  const gj = tracks.parseTrack({
    type: 'Feature',
    properties: { times: ['2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z'] },
    geometry: { type: 'LineString', coordinates: [[5, 52, 1], [5.01, 52, 2]] },
  });
  assert.equal(gj.t[1] - gj.t[0], 60_000);
  assert.ok(gj.d[1] > 600 && gj.d[1] < 750, `distance ${gj.d[1]}`);
  const arr = tracks.parseTrack([
    { time_ms: 1, lat: 52, lon: 5, distance_m: 0 },
    { timeMs: 2, lat: 52.1, lon: 5, distanceM: 10 },
  ]);
  assert.deepEqual(arr.d, [0, 10]);
  assert.equal(tracks.parseTrack({ geometry: { coordinates: [[5, 52]] }, properties: {} }), null);
});
