// The live view page (`/races/{race}`): map, leaderboard, gap ladder, elevation profile, alerts
// ticker, follow-a-rider, replay slider over the history received since the page opened, and the
// connection badge. Wires the RaceStore/LiveSocket to the components; owns no protocol logic.

import { fetchRace } from './api';
import { alertItem } from './alerts';
import { groupColors } from './colors';
import { clear, h, setText } from './dom';
import { formatClock, formatTimeOfDay } from './format';
import { ElevationProfile } from './elevation';
import { GapLadder } from './ladder';
import { Leaderboard } from './leaderboard';
import { LiveSocket, connectionBadge } from './live';
import { RaceMap } from './map';
import { RaceStore, type ViewState } from './store';
import { TrackReplay } from './tracks';
import type { RaceDetail, ServerConfig } from './types';

const TICKER_MAX = 30;

export async function liveView(root: HTMLElement, race: string, config: ServerConfig): Promise<void> {
  const store = new RaceStore();
  const sock = new LiveSocket(race, store);
  const title = h('h1', { text: race });
  const clock = h('span', { class: 'clock', 'aria-label': 'Race time' });
  const header = h(
    'header',
    { class: 'topbar' },
    h('a', { href: '/', class: 'back', 'aria-label': 'All races', text: '←' }),
    title,
    clock,
    h('a', { href: `/races/${encodeURIComponent(race)}/console${location.search}`, class: 'nav-link', text: 'Console' }),
    connectionBadge(sock),
  );
  const mapEl = h('div', { class: 'map', role: 'region', 'aria-label': 'Race map' });
  const ticker = h('ol', { class: 'ticker-list', 'aria-live': 'polite', 'aria-label': 'Latest alerts' });
  const tickerPanel = h('section', { class: 'panel ticker', 'aria-label': 'Alerts' }, h('h2', { text: 'Alerts' }), ticker);
  const slider = h('input', { type: 'range', min: 0, max: 0, value: 0, step: 1, 'aria-label': 'Replay position', class: 'replay-slider' });
  const liveBtn = h('button', { type: 'button', class: 'btn', text: 'Live', 'aria-pressed': 'true' });
  const replayTime = h('span', { class: 'replay-time', 'aria-live': 'off' });
  const replay = h('div', { class: 'replay', role: 'group', 'aria-label': 'Replay' }, h('span', { class: 'replay-label', text: 'Replay' }), slider, replayTime, liveBtn);
  const followInfo = h('div', { class: 'follow-info', 'aria-live': 'polite' });
  const board = new Leaderboard();
  const ladder = new GapLadder(false, store);
  const elev = new ElevationProfile();
  const layout = h(
    'main',
    { class: 'live-layout' },
    h('div', { class: 'map-col' }, mapEl, replay, followInfo, elev.el),
    h('div', { class: 'side-col' }, tickerPanel, ladder.el, board.el),
  );
  clear(root);
  root.append(header, layout);

  const map = new RaceMap(mapEl, config);
  let followed: number | null = null;
  let replayIndex: number | null = null; // null = live
  let detail: RaceDetail | null = null;
  // Replay source: the history received on this page, or the riders' tracks of a finished race.
  let tracks: TrackReplay | null = null;
  let tracksTried = false;
  const replayLength = (): number => (tracks ? tracks.length() : store.historyLength());
  const replayAt = (i: number): ViewState => (tracks ? tracks.at(i) : store.stateAt(i));

  const follow = (id: number | null): void => {
    followed = followed === id ? null : id;
    map.setFollowed(followed);
    board.setFollowed(followed);
    elev.setFollowed(followed);
    renderFollowInfo();
  };
  map.onRiderClick = follow;
  board.onSelect = follow;
  ladder.onRider = follow;

  const followText = h('span');
  const unfollow = h('button', { type: 'button', class: 'btn small', text: 'Stop following' });
  unfollow.addEventListener('click', () => follow(followed));
  followInfo.append(followText, unfollow);

  function renderFollowInfo(): void {
    followInfo.hidden = followed === null;
    if (followed === null) return;
    const s = store.states.get(followed);
    setText(followText, `Following ${store.riderLabel(followed)}${s ? ` · rank ${s.rank || '–'} · ${s.speedKmh.toFixed(1)} km/h` : ''}`);
  }
  renderFollowInfo();

  function render(animateMs: number): void {
    const view = replayIndex === null ? { timeMs: store.timeMs, states: store.states, groups: store.groups } : replayAt(replayIndex);
    const colors = groupColors(view.groups);
    map.update(view.states.values(), store.riders, colors, animateMs);
    board.update(view.states, store.riders, view.groups, colors);
    board.setFollowed(followed);
    ladder.update(view.groups, store.riders, replayIndex === null);
    elev.update(view.states, store.riders, colors);
    setText(clock, store.startMs ? formatClock(view.timeMs - store.startMs) : '');
    const n = replayLength();
    slider.max = String(Math.max(0, n - 1));
    if (replayIndex === null) slider.value = slider.max;
    setText(replayTime, replayIndex === null ? 'live' : formatTimeOfDay(view.timeMs));
    liveBtn.setAttribute('aria-pressed', String(replayIndex === null));
    if (followed !== null && replayIndex === null) renderFollowInfo();
  }

  function renderTicker(): void {
    clear(ticker);
    const who = (id: number): string => store.riderLabel(id);
    const bib = (id: number): string => store.riders.get(id)?.bib ?? String(id);
    for (const a of store.alerts.slice(-TICKER_MAX).reverse()) ticker.append(alertItem(a, who, bib, follow));
    if (!store.alerts.length) ticker.append(h('li', { class: 'muted', text: 'No alerts yet' }));
  }

  slider.addEventListener('input', () => {
    const v = Number(slider.value);
    replayIndex = v >= replayLength() - 1 ? null : v;
    render(0);
  });
  liveBtn.addEventListener('click', () => {
    replayIndex = null;
    render(0);
  });

  store.onChange((kind) => {
    if (kind === 'alerts') return renderTicker();
    if (kind === 'reset') {
      title.textContent = store.raceName || race;
      document.title = `${store.raceName || race} · Flevum`;
      const c = store.snapshot?.course;
      if (c && !detail?.course) map.setCourse(c.line, c.checkpoints);
      elev.reset();
      if (replayIndex !== null) replayIndex = null;
      renderTicker();
    }
  });
  sock.onTick = () => {
    render(replayIndex === null ? sock.tickIntervalMs : 0);
    void maybeLoadTracks();
  };

  async function maybeLoadTracks(): Promise<void> {
    const finished = detail?.status === 'finished';
    if (tracksTried || !finished || store.historyLength() > 2) return;
    tracksTried = true;
    setText(replayTime, 'loading tracks…');
    tracks = await TrackReplay.load(race, new Map(store.states));
    replayIndex = tracks ? 0 : null;
    render(0);
  }
  sock.start();

  try {
    detail = await fetchRace(race);
    title.textContent = detail.name;
    document.title = `${detail.name} · Flevum`;
    const coords = detail.course?.geometry?.coordinates;
    if (coords && coords.length > 1) map.setCourse(coords.map((c) => [c[0], c[1]] as [number, number]), detail.checkpoints);
    elev.setProfile(detail.elevation ?? [], detail.lengthM, detail.checkpoints ?? []);
    if (store.riders.size === 0) for (const r of detail.riders ?? []) store.riders.set(r.riderId, r);
    render(0);
    if (store.snapshot) void maybeLoadTracks();
  } catch {
    // The WebSocket snapshot carries the course; the profile stays empty without the detail.
    const c = store.snapshot?.course;
    elev.setProfile([], c?.lengthM ?? 0, []);
  }
  window.addEventListener('resize', () => map.invalidate());
}
