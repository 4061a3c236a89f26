// The commentators' console (`/races/{race}/console`): the alerts feed (JSON history + SSE live,
// plus alerts on the live WebSocket, deduplicated) with type/severity/rider filters, the gap
// ladder with trend arrows, and a rider detail pane one click away from every alert.

import { fetchAlertsSince, fetchRace, withViewer } from './api';
import { alertItem, alertText } from './alerts';
import { clear, h, setText } from './dom';
import { formatGap, formatGroupKind, formatKm, formatSpeed, formatStatus, formatTimeOfDay, humanize } from './format';
import { GapLadder } from './ladder';
import { LiveSocket, connectionBadge } from './live';
import { RaceStore } from './store';
import { ALERT_TYPES, type Alert, type Severity } from './types';

const SEVERITY_RANK: Record<Severity, number> = { info: 0, notable: 1, critical: 2 };
const FEED_MAX = 300;

export async function consoleView(root: HTMLElement, race: string): Promise<void> {
  const store = new RaceStore();
  const sock = new LiveSocket(race, store);
  const title = h('h1', { text: `${race} · console` });

  const typeSel = h('select', { id: 'f-type' });
  typeSel.append(h('option', { value: '', text: 'All types' }));
  for (const t of ALERT_TYPES) typeSel.append(h('option', { value: t, text: humanize(t) }));
  const sevSel = h('select', { id: 'f-sev' });
  for (const [v, label] of [['info', 'All'], ['notable', 'Notable+'], ['critical', 'Critical only']]) sevSel.append(h('option', { value: v, text: label }));
  const riderInput = h('input', { id: 'f-rider', type: 'search', placeholder: 'Bib or name', autocomplete: 'off' });
  const filters = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Alert filters' },
    h('span', { class: 'filter' }, h('label', { for: 'f-type', text: 'Type' }), typeSel),
    h('span', { class: 'filter' }, h('label', { for: 'f-sev', text: 'Severity' }), sevSel),
    h('span', { class: 'filter' }, h('label', { for: 'f-rider', text: 'Rider' }), riderInput),
  );
  filters.addEventListener('submit', (e) => e.preventDefault());
  const feed = h('ol', { class: 'feed-list', 'aria-live': 'polite', 'aria-label': 'Alerts feed' });
  const count = h('span', { class: 'muted' });
  const feedPanel = h('section', { class: 'panel feed', 'aria-label': 'Alerts feed' }, h('h2', {}, 'Alerts ', count), filters, feed);
  const ladder = new GapLadder(true, store);
  const detailPane = h('section', { class: 'panel detail', 'aria-label': 'Rider detail', tabindex: '-1' });
  const header = h(
    'header',
    { class: 'topbar' },
    h('a', { href: '/', class: 'back', 'aria-label': 'All races', text: '←' }),
    title,
    h('a', { href: `/races/${encodeURIComponent(race)}${location.search}`, class: 'nav-link', text: 'Live map' }),
    connectionBadge(sock),
  );
  clear(root);
  root.append(header, h('main', { class: 'console-layout' }, feedPanel, h('div', { class: 'console-side' }, detailPane, ladder.el)));

  let focused: number | null = null;
  const who = (id: number): string => store.riderLabel(id);
  const bib = (id: number): string => store.riders.get(id)?.bib ?? String(id);

  function focusRider(id: number): void {
    focused = id;
    renderDetail();
    detailPane.focus();
  }
  ladder.onRider = focusRider;

  function renderDetail(): void {
    clear(detailPane);
    detailPane.append(h('h2', { text: 'Rider' }));
    if (focused === null) {
      detailPane.append(h('p', { class: 'muted', text: 'Click a rider in an alert or in the ladder.' }));
      return;
    }
    const info = store.riders.get(focused);
    const s = store.states.get(focused);
    const group = s?.groupId != null ? store.groups.find((g) => g.groupId === s.groupId) : undefined;
    detailPane.append(h('p', { class: 'detail-name', 'data-testid': 'rider-detail', 'data-rider-id': focused }, h('strong', { text: `#${info?.bib ?? focused} ${info?.name ?? ''}` }), info?.team ? ` · ${info.team}` : ''));
    const rows: [string, string][] = s
      ? [
          ['Rank', s.rank ? String(s.rank) : '–'],
          ['Gap', formatGap(s.gapToLeaderMs) || '–'],
          ['Gap ahead', formatGap(s.gapToAheadMs) || '–'],
          ['Speed', formatSpeed(s.speedKmh)],
          ['Status', formatStatus(s.status)],
          ['Group', group ? formatGroupKind(group.kind) : '–'],
          ['Distance', formatKm(s.distanceM)],
          ['Last fix', formatTimeOfDay(s.lastFixMs)],
          ['Battery', s.batteryPct != null ? `${s.batteryPct}%` : '–'],
          ['ETA', s.etaFinishMs != null ? formatTimeOfDay(s.etaFinishMs) : '–'],
        ]
      : [['Status', 'no live data']];
    const dl = h('dl', { class: 'detail-grid' });
    for (const [k, v] of rows) dl.append(h('dt', { text: k }), h('dd', { text: v }));
    detailPane.append(dl);
    const recent = store.alerts.filter((a) => a.riders.includes(focused as number)).slice(-5).reverse();
    if (recent.length) {
      const ul = h('ul', { class: 'detail-alerts' });
      for (const a of recent) ul.append(h('li', { text: alertText(a, who) }));
      detailPane.append(h('h3', { text: 'Recent alerts' }), ul);
    }
  }

  function matches(a: Alert): boolean {
    if (typeSel.value && a.kind.type !== typeSel.value) return false;
    if (SEVERITY_RANK[a.severity] < SEVERITY_RANK[sevSel.value as Severity]) return false;
    const q = riderInput.value.trim().toLowerCase();
    if (q) {
      const hit = a.riders.some((id) => {
        const r = store.riders.get(id);
        return r ? r.bib.toLowerCase() === q || r.name.toLowerCase().includes(q) : String(id) === q;
      });
      if (!hit) return false;
    }
    return true;
  }

  function renderFeed(): void {
    clear(feed);
    const shown = store.alerts.filter(matches).slice(-FEED_MAX).reverse();
    for (const a of shown) feed.append(alertItem(a, who, bib, focusRider));
    if (!shown.length) feed.append(h('li', { class: 'muted', text: store.alerts.length ? 'No alerts match the filters' : 'No alerts yet' }));
    setText(count, `(${shown.length}/${store.alerts.length})`);
  }
  for (const el of [typeSel, sevSel, riderInput]) el.addEventListener('input', renderFeed);

  let lastLadder = 0;
  store.onChange((kind) => {
    if (kind === 'reset') title.textContent = `${store.raceName || race} · console`;
    if (kind === 'alerts' || kind === 'reset') renderFeed();
    if (kind !== 'alerts') {
      const now = performance.now();
      if (now - lastLadder > 900 || kind === 'reset') {
        lastLadder = now;
        ladder.update(store.groups, store.riders, true);
        if (focused !== null) renderDetail();
      }
    }
  });
  renderDetail();
  renderFeed();
  sock.start();

  fetchRace(race)
    .then((d) => {
      title.textContent = `${d.name} · console`;
      if (store.riders.size === 0) for (const r of d.riders ?? []) store.riders.set(r.riderId, r);
    })
    .catch(() => undefined);
  fetchAlertsSince(race, 0)
    .then((list) => store.addAlerts(list))
    .catch(() => undefined);

  // Live alerts feed over SSE (EventSource resumes with Last-Event-ID by itself).
  if (typeof EventSource !== 'undefined') {
    const es = new EventSource(withViewer(`/v1/races/${encodeURIComponent(race)}/alerts`));
    const onEvent = (ev: MessageEvent): void => {
      try {
        const a = JSON.parse(String(ev.data)) as Alert;
        if (a && typeof a.seq === 'number' && a.kind) store.addAlerts([a]);
      } catch {
        /* ignore malformed events */
      }
    };
    es.addEventListener('message', onEvent);
    es.addEventListener('alert', onEvent as EventListener);
  }
}
