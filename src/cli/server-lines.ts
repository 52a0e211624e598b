import { assertNever } from '../protocol/index.js';
import type { ServerEvent } from '../server/index.js';
import { seconds } from './output.js';

/** The stdout line for a server event, or undefined for events only `DEBUG=ntp:*` shows. */
export function serverLine(event: ServerEvent): string | undefined {
  switch (event.type) {
    case 'listening':
      return `commonserver listening on ${event.address}`;
    case 'group-registered':
      return `group ${event.group} registered (${event.apps} app${event.apps === 1 ? '' : 's'})`;
    case 'group-registration-failed':
      return `group file skipped: ${event.reason}`;
    case 'group-deregistered':
      return `group ${event.group} deregistered`;
    case 'group-updated':
      return `group ${event.group} updated (${event.apps} app${event.apps === 1 ? '' : 's'})${event.changes?.length ? `: ${event.changes.join('; ')}` : ''}`;
    case 'app-closed':
      return `app ${event.group}/${event.app} closed: ${event.reason}`;
    case 'login-rejected':
      return `login rejected from ${event.remote}${event.group ? ` for group ${event.group}` : ''}: ${event.code}: ${event.reason}`;
    case 'group-activated': {
      const table = event.apps
        .map((app) => (app.state === 'listening' ? `${app.name} → :${app.remotePort}${app.protocol === 'udp' ? '/udp' : ''}` : `${app.name} ✗ (${app.error})`))
        .join(', ');
      const warnings = event.warnings.map((warning) => `\n    warning: ${warning}`).join('');
      return `group ${event.group} activated from ${event.remote} (client ${event.clientId}): ${table}${warnings}`;
    }
    case 'app-failed':
      return `app ${event.group}/${event.app} failed: ${event.reason}`;
    case 'group-deactivated':
      return `group ${event.group} deactivated (${event.code}): ${event.reason}`;
    case 'bad-peer':
      return `closed ${event.remote}: ${event.code}: ${event.reason}`;
    case 'login-throttled':
      return event.state === 'blocked'
        ? `login refused from ${event.remote} for ${seconds(event.forMs ?? 0)}: ${event.failures} failed logins`
        : `logins from ${event.remote} slowed: ${event.failures} failed logins`;
    case 'user-conn-refused':
      return `user ${event.remote} of ${event.group}/${event.app} refused: ${event.reason}`;
    case 'work-conn-failed':
      return `user of ${event.group}/${event.app} closed: ${event.reason}`;
    // At most one line per app per traffic sample (1 s): a flood of datagrams is one line, not a flood.
    case 'udp-dropped':
      return `udp app ${event.group}/${event.app} dropped ${Object.entries(event.dropped).map(([reason, count]) => `${count} ${reason}`).join(', ')}`;
    // The group-deactivated line that follows carries the timeout: one line per event.
    case 'heartbeat-timeout':
    case 'client-connected':
    case 'heartbeat':
    case 'user-conn-accepted':
    case 'work-conn-requested':
    case 'work-conn-joined':
    case 'work-conn-pooled':
    case 'conn-closed':
    case 'app-opened':
    case 'traffic':
    case 'udp-session-opened':
    case 'udp-session-closed':
      return undefined;
    default:
      return assertNever(event, 'server event');
  }
}
