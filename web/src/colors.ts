// Group colours shared by the map, leaderboard, gap ladder and elevation profile: a colour per
// group by its position in the race (front first), grey for riders without a group.

import type { GroupView } from './types';

const PALETTE = ['#d62728', '#1f5fbf', '#e08a00', '#2a9d4b', '#8e44ad', '#0f8b8d', '#b5485d', '#6b6b00'];
export const NO_GROUP_COLOR = '#6b7280';

/** groupId → colour, by order of the group list. */
export function groupColors(groups: GroupView[]): Map<number, string> {
  const m = new Map<number, string>();
  groups.forEach((g, i) => m.set(g.groupId, g.kind === 'stragglers' ? NO_GROUP_COLOR : PALETTE[i % PALETTE.length]));
  return m;
}

export function riderColor(colors: Map<number, string>, groupId: number | null): string {
  return groupId === null ? NO_GROUP_COLOR : (colors.get(groupId) ?? NO_GROUP_COLOR);
}
