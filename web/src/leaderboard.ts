// The leaderboard table: rank, bib, name, team, gap to the leader (`+1:23`) and group, one row
// per rider (`data-testid="leaderboard-row"`), updated in place each tick so keyboard focus
// survives; clicking a row (or its bib button) follows that rider.

import { riderColor } from './colors';
import { h, setText } from './dom';
import { formatGap, formatGroupKind, formatStatus } from './format';
import type { GroupView, RiderInfo, RiderView } from './types';

interface Row {
  tr: HTMLTableRowElement;
  cells: HTMLTableCellElement[];
  swatch: HTMLSpanElement;
}

export class Leaderboard {
  readonly el: HTMLElement;
  private tbody: HTMLTableSectionElement;
  private rows = new Map<number, Row>();
  private order: number[] = [];
  private followed: number | null = null;
  onSelect: ((riderId: number) => void) | null = null;

  constructor() {
    this.tbody = h('tbody');
    const head = h(
      'tr',
      {},
      h('th', { scope: 'col', text: '#' }),
      h('th', { scope: 'col', text: 'Bib' }),
      h('th', { scope: 'col', text: 'Rider' }),
      h('th', { scope: 'col', class: 'col-team', text: 'Team' }),
      h('th', { scope: 'col', text: 'Gap' }),
      h('th', { scope: 'col', text: 'Group' }),
    );
    this.el = h(
      'section',
      { class: 'panel leaderboard', 'aria-label': 'Leaderboard' },
      h('h2', { text: 'Leaderboard' }),
      h('div', { class: 'table-scroll' }, h('table', {}, h('thead', {}, head), this.tbody)),
    );
  }

  private row(id: number, info: RiderInfo | undefined): Row {
    let row = this.rows.get(id);
    if (row) return row;
    const bib = info?.bib ?? String(id);
    const btn = h('button', { type: 'button', class: 'bib-btn', 'aria-label': `Follow bib ${bib}`, text: bib });
    btn.addEventListener('click', (ev) => {
      ev.stopPropagation();
      this.onSelect?.(id);
    });
    const swatch = h('span', { class: 'swatch', 'aria-hidden': 'true' });
    const cells = [
      h('td', { class: 'num' }),
      h('td', {}, btn),
      h('td', { text: info?.name ?? '' }),
      h('td', { class: 'col-team', text: info?.team ?? '' }),
      h('td', { class: 'num' }),
      h('td', {}),
    ];
    const tr = h('tr', { 'data-testid': 'leaderboard-row', 'data-rider-id': id });
    tr.append(...cells);
    cells[5].append(swatch, h('span'));
    tr.addEventListener('click', () => this.onSelect?.(id));
    row = { tr, cells, swatch };
    this.rows.set(id, row);
    return row;
  }

  update(states: Map<number, RiderView>, riders: Map<number, RiderInfo>, groups: GroupView[], colors: Map<number, string>): void {
    const kinds = new Map(groups.map((g) => [g.groupId, g.kind]));
    const list = [...states.values()].sort(
      (a, b) => (a.rank || 1e9) - (b.rank || 1e9) || b.distanceM - a.distanceM || a.riderId - b.riderId,
    );
    for (const s of list) {
      const r = this.row(s.riderId, riders.get(s.riderId));
      setText(r.cells[0], s.rank ? String(s.rank) : '–');
      const gap =
        s.status === 'abandoned' || s.status === 'not_started' ? formatStatus(s.status) : formatGap(s.gapToLeaderMs);
      setText(r.cells[4], gap);
      const kind = s.groupId !== null ? kinds.get(s.groupId) : undefined;
      setText(r.cells[5].lastChild as Element, kind ? formatGroupKind(kind) : '');
      r.swatch.style.background = riderColor(colors, s.groupId);
      r.tr.dataset.status = s.status;
    }
    const order = list.map((s) => s.riderId);
    if (order.join() !== this.order.join()) {
      this.order = order;
      const frag = document.createDocumentFragment();
      for (const id of order) {
        const r = this.rows.get(id);
        if (r) frag.append(r.tr);
      }
      this.tbody.append(frag);
      for (const [id, r] of this.rows) if (!states.has(id)) r.tr.remove();
    }
  }

  setFollowed(id: number | null): void {
    if (this.followed !== null) this.rows.get(this.followed)?.tr.classList.remove('followed');
    this.followed = id;
    const r = id === null ? undefined : this.rows.get(id);
    if (r) {
      r.tr.classList.add('followed');
      r.tr.setAttribute('aria-selected', 'true');
    }
    for (const [rid, row] of this.rows) if (rid !== id) row.tr.removeAttribute('aria-selected');
  }
}
