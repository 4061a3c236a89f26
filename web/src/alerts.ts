// Alert presentation: a one-line human text per alert kind, and the alert list item
// (`data-testid="alert-item"`) with severity, race time, course km and the riders involved as
// buttons. Used by the live view's ticker and the console's feed.

import { h } from './dom';
import { formatClock, formatGap, humanize } from './format';
import type { Alert } from './types';

function num(kind: Record<string, unknown>, snake: string): number | undefined {
  const camel = snake.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
  const v = kind[snake] ?? kind[camel];
  return typeof v === 'number' ? v : undefined;
}

/** Text for an alert; `who` names riders. */
export function alertText(a: Alert, who: (id: number) => string): string {
  const k = a.kind as Record<string, unknown>;
  const riders = a.riders.map(who).join(', ');
  const r = riders || 'A rider';
  switch (a.kind.type) {
    case 'race_started':
      return 'The race has started';
    case 'breakaway_formed':
      return `Breakaway formed${riders ? `: ${riders}` : ''} (${formatGap(num(k, 'gap_ms') ?? 0)})`;
    case 'breakaway_caught':
      return `Breakaway caught${riders ? `: ${riders}` : ''}`;
    case 'group_split':
      return `Group split${riders ? `: ${riders}` : ''}`;
    case 'gap_changed': {
      const growing = k.growing === true;
      return `Gap ${growing ? 'grows past' : 'falls below'} ${formatClock(num(k, 'threshold_ms') ?? 0)}: now ${formatGap(num(k, 'gap_ms') ?? 0)}`;
    }
    case 'leader_changed': {
      const prev = num(k, 'previous');
      return `New leader: ${r}${prev !== undefined ? ` (was ${who(prev)})` : ''}`;
    }
    case 'rider_stopped':
      return `${r} stopped`;
    case 'possible_crash':
      return `Possible crash: ${r}`;
    case 'dropped_from_group':
      return `${r} dropped from the group`;
    case 'off_course':
      return `${r} off course (${Math.round(num(k, 'offset_m') ?? 0)} m)`;
    case 'back_on_course':
      return `${r} back on course`;
    case 'signal_lost':
      return `Signal lost: ${r}`;
    case 'signal_regained':
      return `Signal back: ${r}`;
    case 'low_battery':
      return `Low battery (${num(k, 'battery_pct') ?? '?'}%): ${r}`;
    case 'checkpoint_leader':
      return `${r} leads at ${typeof k.checkpoint === 'string' ? k.checkpoint : 'checkpoint'}`;
    case 'finisher':
      return `${r} finishes ${num(k, 'position') ?? ''}. in ${formatClock(num(k, 'race_time_ms') ?? 0)}`;
    case 'sos':
      return `SOS from ${r}`;
    case 'rider_abandoned': {
      const p = num(k, 'finish_position');
      return `${r} out of the race${p !== undefined ? ` (was ${p}. at the finish: those behind move up)` : ''}`;
    }
    case 'rider_reinstated': {
      const p = num(k, 'finish_position');
      return `${r} back in the race${p !== undefined ? ` (finishes ${p}.: those behind move down)` : ''}`;
    }
    default:
      return `${humanize(String(a.kind.type))}${riders ? `: ${riders}` : ''}`;
  }
}

export function alertItem(
  a: Alert,
  who: (id: number) => string,
  bib: (id: number) => string,
  onRider: (id: number) => void,
): HTMLLIElement {
  const riders = h('span', { class: 'alert-riders' });
  for (const id of a.riders.slice(0, 12)) {
    const b = h('button', { type: 'button', class: 'chip', 'aria-label': `Show ${who(id)}`, text: bib(id) });
    b.addEventListener('click', () => onRider(id));
    riders.append(b);
  }
  return h(
    'li',
    {
      class: `alert sev-${a.severity}`,
      'data-testid': 'alert-item',
      'data-alert-type': a.kind.type,
      'data-severity': a.severity,
    },
    h('span', { class: 'alert-sev', text: a.severity }),
    h('span', { class: 'alert-time', text: formatClock(a.raceTimeMs) }),
    h('span', { class: 'alert-km', text: `${a.courseKm.toFixed(1)} km` }),
    h('span', { class: 'alert-text', text: alertText(a, who) }),
    riders,
  );
}
