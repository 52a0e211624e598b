// The pools panel: one table per open pool, each member's health and conns (from /api/pools).
import { el } from './format.js';

export function renderPools(root, pools) {
  root.replaceChildren();
  if (pools.length === 0) root.append(el('p', { class: 'muted', text: 'no pool open' }));
  for (const pool of pools) {
    const card = el('article', { class: 'pool', 'data-pool': pool.name });
    card.append(
      el(
        'h3',
        {},
        el('span', { text: `${pool.name} ${pool.domains === undefined ? `:${pool.port}` : pool.domains.join(', ')}` }),
        el('span', { class: 'badge', text: pool.balance }),
      ),
    );
    card.append(el('p', { class: 'client', text: `${pool.usersRefused} user${pool.usersRefused === 1 ? '' : 's'} reset with no healthy member` }));
    const table = el('table', {}, el('tr', {}, ...['group', 'app', 'health', 'live conns', 'users routed', 'last check'].map((h) => el('th', { text: h }))));
    for (const member of pool.members) {
      const health = member.healthy ? 'healthy' : 'unhealthy';
      table.append(
        el(
          'tr',
          { 'data-member': `${pool.name}/${member.group}`, 'data-health': health, 'data-live-conns': String(member.liveConns) },
          el('td', { text: member.group }),
          el('td', { text: member.app }),
          el('td', {}, el('span', { class: 'badge state', 'data-state': member.healthy ? 'in-use' : 'lost', text: health })),
          el('td', { class: 'num', text: String(member.liveConns) }),
          el('td', { class: 'num', text: String(member.usersRouted) }),
          el('td', { text: member.reason }),
        ),
      );
    }
    card.append(table);
    root.append(card);
  }
}
