// The race list page (`/`): every race from `GET /v1/races` with status, start time and rider
// count, linking to its live view and console.

import { fetchRaces } from './api';
import { clear, h } from './dom';

export async function raceList(root: HTMLElement): Promise<void> {
  const list = h('ul', { class: 'race-list' });
  clear(root);
  root.append(
    h('header', { class: 'topbar' }, h('h1', { text: 'Flevum · live races' })),
    h('main', { class: 'races' }, list),
  );
  document.title = 'Flevum · live races';
  try {
    const races = await fetchRaces();
    races.sort((a, b) => (a.status === 'live' ? -1 : 0) - (b.status === 'live' ? -1 : 0) || b.startMs - a.startMs);
    if (!races.length) list.append(h('li', { class: 'muted', text: 'No races yet.' }));
    for (const r of races) {
      const q = location.search;
      const start = new Date(r.startMs);
      list.append(
        h(
          'li',
          { class: `race status-${r.status}` },
          h('a', { href: `/races/${encodeURIComponent(r.id)}${q}`, 'data-testid': 'race-link', class: 'race-name', text: r.name }),
          h('span', { class: `badge status-${r.status}`, text: r.status }),
          h('span', { class: 'muted', text: `${r.sport} · ${start.toLocaleString()} · ${r.riders} riders${r.visibility === 'private' ? ' · private' : ''}` }),
          h('a', { href: `/races/${encodeURIComponent(r.id)}/console${q}`, class: 'nav-link', 'aria-label': `Console for ${r.name}`, text: 'Console' }),
        ),
      );
    }
  } catch (e) {
    list.append(h('li', { class: 'error', role: 'alert', text: `Could not load races: ${String(e)}` }));
  }
}
