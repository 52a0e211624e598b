import { assertNever } from '../protocol/index.js';
import type { DeactivationCode, ServerEvent } from '../server/index.js';
import { eventEntry, type LogEntry } from './logger.js';
import { bindingText, bytes, seconds } from './output.js';

/** Departures the operator did not ask for: the client vanished or misbehaved. */
const UNPLANNED: ReadonlySet<DeactivationCode> = new Set(['CONNECTION_LOST', 'HEARTBEAT_TIMEOUT', 'PROTOCOL_ERROR', 'SLOW_PEER']);

/**
 * The log entry for a server event, or undefined for events only `DEBUG=ntp:*` shows.
 * info: lifecycle; warn: a peer or app in trouble; error: a file the operator must fix;
 * debug: one line per user connection.
 */
export function serverEntry(event: ServerEvent): LogEntry | undefined {
  switch (event.type) {
    case 'listening':
      return eventEntry(event, 'info', `commonserver listening on ${event.address}`);
    case 'group-registered':
      return eventEntry(event, 'info', `group ${event.group} registered (${event.apps} app${event.apps === 1 ? '' : 's'})`);
    case 'group-registration-failed':
      return eventEntry(event, 'error', `group file skipped: ${event.reason}`);
    case 'group-deregistered':
      return eventEntry(event, 'info', `group ${event.group} deregistered`);
    case 'group-updated':
      return eventEntry(
        event,
        'info',
        `group ${event.group} updated (${event.apps} app${event.apps === 1 ? '' : 's'})${event.changes?.length ? `: ${event.changes.join('; ')}` : ''}`,
      );
    case 'app-closed':
      return eventEntry(event, 'info', `app ${event.group}/${event.app} closed: ${event.reason}`);
    case 'login-rejected':
      return eventEntry(event, 'warn', `login rejected from ${event.remote}${event.group ? ` for group ${event.group}` : ''}: ${event.code}: ${event.reason}`);
    case 'group-activated': {
      const table = event.apps.map((app) => bindingText(app, (port) => `:${port}`)).join(', ');
      const warnings = event.warnings.map((warning) => `\n    warning: ${warning}`).join('');
      return eventEntry(event, 'info', `group ${event.group} activated from ${event.remote} (client ${event.clientId}): ${table}${warnings}`);
    }
    case 'app-refused':
      return eventEntry(event, 'warn', `app ${event.group}/${event.app} refused by ${event.by}: ${event.reason}`);
    case 'app-failed':
      return eventEntry(event, 'warn', `app ${event.group}/${event.app} failed: ${event.reason}`);
    case 'vhost-listening':
      return eventEntry(event, 'info', `${event.kind} vhost listening on ${event.address}`);
    case 'group-deactivated':
      return eventEntry(event, UNPLANNED.has(event.code) ? 'warn' : 'info', `group ${event.group} deactivated (${event.code}): ${event.reason}`);
    case 'bad-peer':
      return eventEntry(event, 'warn', `closed ${event.remote}: ${event.code}: ${event.reason}`);
    case 'login-throttled':
      return eventEntry(
        event,
        'warn',
        event.state === 'blocked'
          ? `login refused from ${event.remote} for ${seconds(event.forMs ?? 0)}: ${event.failures} failed logins`
          : `logins from ${event.remote} slowed: ${event.failures} failed logins`,
      );
    case 'user-conn-refused':
      return eventEntry(event, 'info', `user ${event.remote} of ${event.group}/${event.app} refused: ${event.reason}`);
    case 'visitor-refused':
      return eventEntry(event, 'warn', `visitor ${event.visitorGroup}/${event.visitor} refused by ${event.target}: ${event.reason}`);
    case 'work-conn-failed':
      return eventEntry(event, 'warn', `user of ${event.group}/${event.app} closed: ${event.reason}`);
    // At most one line per app per traffic sample (1 s): a flood of datagrams is one line, not a flood.
    case 'udp-dropped':
      return eventEntry(
        event,
        'warn',
        `udp app ${event.group}/${event.app} dropped ${Object.entries(event.dropped)
          .map(([reason, count]) => `${count} ${reason}`)
          .join(', ')}`,
      );
    case 'udp-session-opened':
      return eventEntry(event, 'debug', `udp session of ${event.peer} on ${event.group}/${event.app} opened`);
    case 'udp-session-closed':
      return eventEntry(
        event,
        'debug',
        `udp session of ${event.peer} on ${event.group}/${event.app} closed after ${seconds(event.durationMs)} (${event.reason}): ${event.datagramsIn} datagrams in (${bytes(event.bytesIn)}), ${event.datagramsOut} out (${bytes(event.bytesOut)})`,
      );
    case 'pool-opened':
      return eventEntry(event, 'info', `pool ${event.pool} open ${event.port === 0 ? 'on the vhost ports' : `on :${event.port}`} (${event.balance})`);
    case 'pool-closed':
      return eventEntry(event, 'info', `pool ${event.pool} closed: ${event.reason}`);
    case 'pool-member-joined':
      return eventEntry(event, 'info', `pool ${event.pool}: ${event.group}/${event.app} joined`);
    // The group-deactivated line beside it says whether its client vanished.
    case 'pool-member-left':
      return eventEntry(event, 'info', `pool ${event.pool}: ${event.group}/${event.app} left: ${event.reason}`);
    case 'pool-member-health':
      return eventEntry(
        event,
        event.healthy ? 'info' : 'warn',
        `pool ${event.pool}: ${event.group}/${event.app} ${event.healthy ? 'healthy again, gets users' : 'unhealthy, gets no new users'}: ${event.reason}`,
      );
    // Per user, like user-conn-refused: no member could take it.
    case 'pool-user-refused':
      return eventEntry(event, 'info', `user ${event.remote} of pool ${event.pool} reset: ${event.reason}`);
    case 'pool-user-routed':
      return event.retriedFrom === undefined
        ? eventEntry(event, 'debug', `user ${event.remote} of pool ${event.pool} routed to ${event.group}/${event.app}`)
        : eventEntry(
            event,
            'warn',
            `user ${event.remote} of pool ${event.pool} retried on ${event.group}/${event.app}: ${event.retriedFrom} could not serve it (${event.reason})`,
          );
    case 'client-connected':
      return eventEntry(event, 'debug', `client ${event.clientId} of group ${event.group} connected from ${event.remote}`);
    case 'app-opened':
      return eventEntry(
        event,
        'debug',
        `app ${event.group}/${event.app} listening on :${event.port}${event.domains ? ` for ${event.domains.join(', ')}` : ''}`,
      );
    case 'vhost-refused':
      return eventEntry(event, 'debug', `${event.kind} vhost user ${event.remote} refused: ${event.code}: ${event.reason}`);
    case 'heartbeat-timeout':
      return eventEntry(event, 'debug', `group ${event.group}: no heartbeat for ${seconds(event.silentMs)}`);
    case 'user-conn-accepted':
      return eventEntry(
        event,
        'debug',
        `${event.visitor === undefined ? 'user' : `visitor of ${event.visitor} at`} ${event.remote} of ${event.group}/${event.app} accepted`,
      );
    case 'work-conn-requested':
      return eventEntry(event, 'debug', `work conn asked for a user of ${event.group}/${event.app}`);
    case 'work-conn-joined':
      return eventEntry(
        event,
        'debug',
        event.mux
          ? `user of ${event.group}/${event.app} on a new stream of the mux conn`
          : `user of ${event.group}/${event.app} joined a ${event.pooled ? 'pooled' : 'new'} work conn after ${seconds(event.waitedMs)}`,
      );
    case 'mux-conn':
      return event.state === 'up'
        ? eventEntry(event, 'debug', `group ${event.group}: mux conn up`)
        : eventEntry(event, 'info', `group ${event.group}: mux conn lost (${event.reason ?? 'closed'}), its users reset; asking for a new one`);
    case 'work-conn-pooled':
      return eventEntry(event, 'debug', `group ${event.group}: work conn added to the pool (${event.idle} idle)`);
    case 'conn-closed':
      return eventEntry(
        event,
        'debug',
        `user of ${event.group}/${event.app} closed after ${seconds(event.durationMs)}: ${bytes(event.bytesIn)} in, ${bytes(event.bytesOut)} out${event.error ? ` (${event.error})` : ''}`,
      );
    // Periodic: a line each would drown the rest (DEBUG=ntp:* and the admin API have them).
    case 'heartbeat':
    case 'traffic':
      return undefined;
    default:
      return assertNever(event, 'server event');
  }
}
