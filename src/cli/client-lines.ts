import { assertNever } from '../protocol/index.js';
import type { ClientEvent } from '../client/index.js';
import { seconds } from './output.js';

/** The stdout line for a client event, or undefined for events only `DEBUG=ntp:*` shows. */
export function clientLine(group: string, event: ClientEvent): string | undefined {
  switch (event.type) {
    case 'connecting':
      return event.attempt === 1 ? `groupclient ${group} connecting to ${event.server}` : undefined;
    case 'login-accepted': {
      const table = event.apps
        .map((app) => (app.state === 'listening' ? `${app.name} → server port ${app.remotePort}${app.protocol === 'udp' ? '/udp' : ''}` : `${app.name} ✗ (${app.error})`))
        .join(', ');
      const warnings = event.warnings.map((warning) => `\n    warning: ${warning}`).join('');
      return `group ${group} active on ${event.server}: ${table}${warnings}`;
    }
    case 'login-rejected':
      return `login rejected: ${event.code}: ${event.reason}${event.willRetry ? ' (retrying)' : ''}`;
    case 'connect-failed':
      // The reason names the address when the dial itself failed.
      return `connection to the server failed (attempt ${event.attempt}): ${event.reason}; retrying in ${seconds(event.retryInMs)}`;
    case 'session-lost':
      return `group ${group} lost: ${event.code ? `${event.code}: ` : ''}${event.reason}; reconnecting${event.retryInMs > 0 ? ` in ${seconds(event.retryInMs)}` : ''}`;
    case 'local-dial-failed':
      // The reason starts with the target's address.
      return `app ${event.app}: local app unreachable: ${event.reason}`;
    case 'apps-changed': {
      const opened = event.opened.map((app) => (app.state === 'listening' ? `${app.name} → server port ${app.remotePort}${app.protocol === 'udp' ? '/udp' : ''}` : `${app.name} ✗ (${app.error})`));
      const parts = [...(opened.length ? [`opened ${opened.join(', ')}`] : []), ...(event.closed.length ? [`closed ${event.closed.join(', ')}`] : [])];
      const unknown = event.unknown.length ? `\n    warning: not in this host's group file, users will be refused: ${event.unknown.join(', ')}` : '';
      return `group ${group} changed on the server: ${parts.join('; ')}${unknown}`;
    }
    case 'spec-reloaded':
      return `group file reloaded: ${event.apps.join(', ')}${event.changes?.length ? `\n    ${event.changes.join('\n    ')}` : ''}`;
    case 'pool-trimmed':
      // One line per session: a server repeating the ask must not flood the log with it.
      if (event.trimmedInSession !== event.asked - event.opened) return undefined;
      return `the server asked for ${event.asked} pooled work conns; opened ${event.opened}, at most ${event.cap} may be opening or idle (--max-pooled-work-conns); further excess asks this session are counted in DEBUG=ntp:client:* only`;
    case 'stopped':
      return `groupclient ${group} stopped: ${event.reason}`;
    // The session-lost line that follows carries the timeout: one line per event.
    case 'heartbeat-timeout':
    case 'heartbeat':
    case 'pool-requested':
    case 'work-conn-requested':
    case 'work-conn-opened':
    case 'conn-closed':
    case 'udp-session-opened':
    case 'udp-session-closed':
      return undefined;
    default:
      return assertNever(event, 'client event');
  }
}
