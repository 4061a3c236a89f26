// The gap ladder: groups front first (breakaway → peloton → chasers → stragglers) with rider
// count, gap to the group ahead and to the leader, optional trend arrows (gap to the leader now
// vs ~30 s ago), and the riders as buttons.

import { groupColors } from './colors';
import { clear, h } from './dom';
import { formatGap, formatGroupKind } from './format';
import type { RaceStore } from './store';
import type { GroupView, RiderInfo } from './types';

const TREND_WINDOW_MS = 30_000;
const TREND_DEADBAND_MS = 2_000;

export class GapLadder {
  readonly el: HTMLElement;
  private list: HTMLOListElement;
  private lastSig = '';
  onRider: ((riderId: number) => void) | null = null;

  constructor(
    private readonly withTrends: boolean,
    private readonly store: RaceStore,
  ) {
    this.list = h('ol', { class: 'ladder-list' });
    this.el = h('section', { class: 'panel ladder', 'aria-label': 'Gap ladder' }, h('h2', { text: 'Groups' }), this.list);
  }

  update(groups: GroupView[], riders: Map<number, RiderInfo>, live: boolean): void {
    // Rebuild only when something visible changed (keeps keyboard focus on the rider buttons).
    const sig = JSON.stringify([live, groups.map((g) => [g.groupId, g.kind, g.riders, g.gapToAheadMs, g.gapToLeaderMs, this.withTrends && live ? this.trendKey(g) : 0])]);
    if (sig === this.lastSig) return;
    this.lastSig = sig;
    const colors = groupColors(groups);
    clear(this.list);
    if (!groups.length) {
      this.list.append(h('li', { class: 'muted', text: 'No groups yet' }));
      return;
    }
    for (const g of groups) {
      const color = colors.get(g.groupId) ?? '#888';
      const head = h(
        'div',
        { class: 'ladder-head' },
        h('span', { class: 'swatch', style: `background:${color}`, 'aria-hidden': 'true' }),
        h('strong', { text: formatGroupKind(g.kind) }),
        h('span', { class: 'muted', text: ` ${g.riders.length} rider${g.riders.length === 1 ? '' : 's'}` }),
        h('span', { class: 'ladder-gap', title: 'Gap to the leader', text: g.gapToAheadMs === null ? 'head of race' : formatGap(g.gapToLeaderMs) }),
      );
      if (g.gapToAheadMs !== null && g.gapToAheadMs !== g.gapToLeaderMs) {
        head.append(h('span', { class: 'ladder-sub muted', text: `${formatGap(g.gapToAheadMs)} to group ahead` }));
      }
      if (this.withTrends && live) head.append(this.trend(g));
      const riderBtns = h('div', { class: 'ladder-riders' });
      const shown = g.riders.slice(0, 24);
      for (const id of shown) {
        const info = riders.get(id);
        const b = h('button', {
          type: 'button',
          class: 'chip',
          title: info?.name ?? '',
          'aria-label': `Bib ${info?.bib ?? id} ${info?.name ?? ''}`,
          text: info?.bib ?? String(id),
        });
        b.addEventListener('click', () => this.onRider?.(id));
        riderBtns.append(b);
      }
      if (g.riders.length > shown.length) riderBtns.append(h('span', { class: 'muted', text: ` +${g.riders.length - shown.length}` }));
      this.list.append(h('li', { class: `ladder-item kind-${g.kind}`, 'data-group-id': g.groupId }, head, riderBtns));
    }
  }

  private trendKey(g: GroupView): number {
    const then = this.store.gapAgo(g.groupId, TREND_WINDOW_MS);
    if (then === undefined || then === null || g.gapToLeaderMs === null) return 0;
    const d = g.gapToLeaderMs - then;
    return d > TREND_DEADBAND_MS ? 1 : d < -TREND_DEADBAND_MS ? -1 : 2;
  }

  private trend(g: GroupView): HTMLElement {
    const then = this.store.gapAgo(g.groupId, TREND_WINDOW_MS);
    let arrow = '·';
    let label = 'gap trend unknown';
    let cls = 'trend-flat';
    if (g.gapToLeaderMs === null || g.gapToAheadMs === null) {
      label = 'leading group';
    } else if (then !== undefined && then !== null) {
      const d = g.gapToLeaderMs - then;
      if (d > TREND_DEADBAND_MS) {
        arrow = '▲';
        label = `gap to leader growing by ${formatGap(d)} in 30 s`;
        cls = 'trend-up';
      } else if (d < -TREND_DEADBAND_MS) {
        arrow = '▼';
        label = `gap to leader shrinking by ${formatGap(-d)} in 30 s`;
        cls = 'trend-down';
      } else {
        arrow = '=';
        label = 'gap to leader stable';
      }
    }
    return h('span', { class: `trend ${cls}`, title: label, 'aria-label': label, role: 'img', text: arrow });
  }
}
