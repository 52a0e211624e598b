import { assertNever, type AppBinding } from '../protocol/index.js';
import type { ClientEvent } from '../client/index.js';
import { eventEntry, type LogEntry } from './logger.js';
import { bindingText, bytes, seconds } from './output.js';

function appTable(apps: AppBinding[]): string[] {
  return apps.map((app) => bindingText(app, (port) => `server port ${port}`));
}

/**
 * The log entry for a client event, or undefined for events only `DEBUG=ntp:*` shows.
 * info: lifecycle; warn: trouble the client recovers from; error: it stops; debug: one
 * line per user connection.
 */
export function clientEntry(group: string, event: ClientEvent): LogEntry | undefined {
  switch (event.type) {
    case 'connecting':
      return eventEntry(event, event.attempt === 1 ? 'info' : 'debug', `groupclient ${group} connecting to ${event.server}`);
    case 'login-accepted': {
      const warnings = event.warnings.map((warning) => `\n    warning: ${warning}`).join('');
      return eventEntry(event, 'info', `group ${group} active on ${event.server}: ${appTable(event.apps).join(', ')}${warnings}`);
    }
    case 'login-rejected':
      return eventEntry(
        event,
        event.willRetry ? 'warn' : 'error',
        `login rejected: ${event.code}: ${event.reason}${event.tryingNext ? ` (by ${event.server}; trying the next server)` : event.willRetry ? ' (retrying)' : ''}`,
      );
    case 'connect-failed':
      // The reason names the address when the dial itself failed.
      return eventEntry(
        event,
        'warn',
        `connection to the server failed (attempt ${event.attempt}): ${event.reason}; ${event.next !== undefined ? `trying ${event.next} next` : `retrying in ${seconds(event.retryInMs)}`}`,
      );
    case 'session-lost':
      return eventEntry(
        event,
        'warn',
        `group ${group} lost: ${event.code ? `${event.code}: ` : ''}${event.reason}; reconnecting${event.retryInMs > 0 ? ` in ${seconds(event.retryInMs)}` : ''}`,
      );
    case 'visitor-listening':
      return eventEntry(event, 'info', `visitor ${event.visitor} listening on ${event.protocol} ${event.bind} for ${event.target}`);
    case 'visitor-failed':
      return eventEntry(event, 'error', `visitor ${event.visitor} cannot listen on ${event.bind}: ${event.reason}`);
    case 'visitor-refused':
      return eventEntry(
        event,
        'warn',
        event.byServer
          ? `visitor ${group}/${event.visitor} refused by group ${event.group} app ${event.app}: ${event.reason}`
          : `visitor ${event.visitor} (group ${event.group} app ${event.app}): user reset: ${event.reason}`,
      );
    case 'visit-refused':
      return eventEntry(event, 'warn', `visitor ${event.visitorGroup}/${event.visitor} refused by group ${group} app ${event.app}: ${event.reason}`);
    case 'visitor-arrived':
      return eventEntry(event, 'debug', `visitor of group ${event.visitorGroup} for app ${event.app}`);
    case 'visitor-conn-closed':
      return eventEntry(
        event,
        'debug',
        `visitor ${event.visitor}: user closed after ${seconds(event.durationMs)}: ${bytes(event.bytesIn)} in, ${bytes(event.bytesOut)} out${event.error ? ` (${event.error})` : ''}`,
      );
    case 'local-dial-failed':
      // The reason starts with the target's address.
      return eventEntry(event, 'warn', `app ${event.app}: local app unreachable: ${event.reason}`);
    case 'apps-changed': {
      const opened = appTable(event.opened);
      const parts = [...(opened.length ? [`opened ${opened.join(', ')}`] : []), ...(event.closed.length ? [`closed ${event.closed.join(', ')}`] : [])];
      const unknown = event.unknown.length ? `\n    warning: not in this host's group file, users will be refused: ${event.unknown.join(', ')}` : '';
      return eventEntry(event, 'info', `group ${group} changed on the server: ${parts.join('; ')}${unknown}`);
    }
    case 'apps-received': {
      const served = event.apps.map((app) => `${app.name} → ${app.target}`).join(', ') || 'none';
      const warnings = event.warnings.map((warning) => `\n    warning: ${warning}`).join('');
      return eventEntry(event, event.warnings.length ? 'warn' : 'info', `apps of group ${group} from the server: ${served}${warnings}`);
    }
    case 'app-refused':
      return eventEntry(event, 'warn', `app ${event.app} refused by host: ${event.reason} (never dialed; the server is told)`);
    case 'spec-reloaded': {
      const lines = [...(event.changes ?? []), ...(event.warnings ?? []).map((warning) => `warning: ${warning}`)];
      return eventEntry(
        event,
        event.warnings?.length ? 'warn' : 'info',
        `group file reloaded: ${event.apps.join(', ')}${lines.map((line) => `\n    ${line}`).join('')}`,
      );
    }
    case 'pool-trimmed':
      // One line per session: a server repeating the ask must not flood the log with it.
      return eventEntry(
        event,
        event.trimmedInSession === event.asked - event.opened ? 'warn' : 'debug',
        `the server asked for ${event.asked} pooled work conns; opened ${event.opened}, at most ${event.cap} may be opening or idle (--max-pooled-work-conns); further excess asks this session are logged at debug level only`,
      );
    // One line per mux conn, not per OPEN: a hostile server may send thousands.
    case 'mux-stream-refused':
      return eventEntry(
        event,
        event.refusedOnConn === 1 ? 'warn' : 'debug',
        `the server opened a user on the mux conn while ${event.cap} were open (--max-mux-streams): refused; further refusals on this conn are logged at debug level only`,
      );
    case 'stopped':
      return eventEntry(event, event.fatal ? 'error' : 'info', `groupclient ${group} stopped: ${event.reason}`);
    case 'health-changed':
      return eventEntry(
        event,
        event.healthy ? 'info' : 'warn',
        `app ${event.app}: ${event.healthy ? 'healthy again' : 'unhealthy'} (${event.reason}); told the server`,
      );
    // The session-lost line that follows carries the timeout.
    case 'heartbeat-timeout':
      return eventEntry(event, 'debug', `no answer from the server for ${seconds(event.silentMs)}`);
    case 'pool-requested':
      return eventEntry(event, 'debug', `the server asked for ${event.count} pooled work conns`);
    case 'work-conn-requested':
      return eventEntry(
        event,
        'debug',
        `a user of ${event.app} ${event.mux ? 'arrived on a stream of the mux conn' : event.pooled ? 'arrived on a pooled work conn' : 'asked for a work conn'}`,
      );
    case 'work-conn-opened':
      return eventEntry(event, 'debug', `${event.mux ? 'stream' : 'work conn'} opened for ${event.app}${event.pooled ? ' (pooled)' : ''}`);
    case 'conn-closed':
      return eventEntry(
        event,
        'debug',
        `user of ${event.app} closed after ${seconds(event.durationMs)}: ${bytes(event.bytesIn)} in, ${bytes(event.bytesOut)} out${event.error ? ` (${event.error})` : ''}`,
      );
    case 'udp-session-opened':
      return eventEntry(event, 'debug', `udp session opened for ${event.app}${event.pooled ? ' (pooled work conn)' : ''}`);
    case 'udp-session-closed':
      return eventEntry(
        event,
        'debug',
        `udp session of ${event.app} closed (${event.reason}): ${event.datagramsIn} datagrams in, ${event.datagramsOut} out, ${event.dropped} dropped`,
      );
    case 'heartbeat':
      return undefined;
    default:
      return assertNever(event, 'client event');
  }
}
