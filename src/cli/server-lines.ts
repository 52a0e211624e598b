import type { ServerEvent } from '../server/index.js';

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
    case 'login-rejected':
      return `login rejected from ${event.remote}${event.group ? ` for group ${event.group}` : ''}: ${event.code}: ${event.reason}`;
    case 'group-activated': {
      const table = event.apps
        .map((app) => (app.state === 'listening' ? `${app.name} → :${app.remotePort}` : `${app.name} ✗ (${app.error})`))
        .join(', ');
      const warnings = event.warnings.map((warning) => `\n    warning: ${warning}`).join('');
      return `group ${event.group} activated from ${event.remote} (client ${event.clientId}): ${table}${warnings}`;
    }
    case 'app-failed':
      return `app ${event.group}/${event.app} failed: ${event.reason}`;
    case 'heartbeat-timeout':
      return `group ${event.group}: no heartbeat for ${event.silentMs}ms`;
    case 'group-deactivated':
      return `group ${event.group} deactivated (${event.code}): ${event.reason}`;
    case 'bad-peer':
      return `closed ${event.remote}: ${event.code}: ${event.reason}`;
    case 'work-conn-failed':
      return `user of ${event.group}/${event.app} closed: ${event.reason}`;
    case 'client-connected':
    case 'heartbeat':
    case 'user-conn-accepted':
    case 'user-conn-refused':
    case 'work-conn-requested':
    case 'work-conn-joined':
    case 'work-conn-pooled':
    case 'conn-closed':
      return undefined;
  }
}
