// Entry point: routes by path (`/`, `/races/{race}`, `/races/{race}/console`) to one of the three
// pages. Navigation between pages is plain links (each page owns its sockets for its lifetime).

import './style.css';
import { fetchConfig } from './api';
import { consoleView } from './console';
import { h } from './dom';
import { liveView } from './liveview';
import { raceList } from './racelist';

async function main(): Promise<void> {
  const root = document.getElementById('app');
  if (!root) return;
  const parts = location.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return raceList(root);
  if (parts[0] === 'races' && parts.length === 2) return liveView(root, parts[1], await fetchConfig());
  if (parts[0] === 'races' && parts.length === 3 && parts[2] === 'console') return consoleView(root, parts[1]);
  root.append(h('main', { class: 'races' }, h('h1', { text: 'Not found' }), h('a', { href: '/', text: 'All races' })));
}

void main();
