import type { Observable, Subscription } from 'rxjs';
import { observe, type ObserverFailure } from '../net/index.js';
import { assertNever } from '../protocol/index.js';
import type { ServerEvent } from '../server/index.js';
import { MermaidTrace } from './mermaid.js';

/**
 * Draws a commonserver's real session as the reference sequence diagram: each ServerEvent
 * becomes the step it stands for, with the wire message names. Heartbeats are drawn once per
 * session as a loop and counted afterwards, so a long run stays readable. What the drawing
 * throws goes to `onFailure` (the server's InternalErrors): a trace never ends the process.
 */
export function traceServer(events$: Observable<ServerEvent>, file: string, onFailure: ObserverFailure): { close(): Promise<void> } {
  const trace = new MermaidTrace(file);
  const heartbeats = new Map<string, number>();
  const loggingIn = new Set<string>();
  const flushHeartbeats = (): void => {
    for (const [group, count] of heartbeats) {
      if (count > 1) trace.note('CommonServer, Client', `${count - 1} more heartbeat(s) of ${group}`);
      heartbeats.set(group, 1);
    }
  };
  const subscription: Subscription = observe(
    events$,
    'trace',
    (event) => {
      if (event.type !== 'heartbeat' && event.type !== 'traffic') flushHeartbeats();
      drawServerEvent(trace, event, heartbeats, loggingIn);
    },
    onFailure,
  );
  return {
    close: () => {
      subscription.unsubscribe();
      flushHeartbeats();
      return trace.close();
    },
  };
}

/** The accepted login, drawn before the first step of activation (an app's port opening comes first). */
function drawLogin(trace: MermaidTrace, group: string, loggingIn: Set<string>): void {
  if (!loggingIn.delete(group)) return;
  trace.message('CommonServer', 'Client', 'Challenge', { reply: true });
  trace.message('Client', 'CommonServer', 'Login');
  trace.message('CommonServer', 'CommonServer', `take ${group} out of readyGroup, validate it`);
  trace.message('CommonServer', 'appGroup', `activate ${group}: put it into inUseGroup`, { lost: true });
  trace.message('appGroup', 'appGroup', 'start watching heartbeats');
}

function drawServerEvent(trace: MermaidTrace, event: ServerEvent, heartbeats: Map<string, number>, loggingIn: Set<string>): void {
  switch (event.type) {
    case 'listening':
      trace.phase('Preparation');
      return trace.message('CommonServer', 'CommonServer', `listen on the bind port ${event.address}`);
    case 'group-registered':
      trace.phase('Preparation');
      return trace.message('CommonServer', 'CommonServer', `register ${event.group} into readyGroup (${event.apps} apps)`);
    case 'group-updated':
      return trace.message('CommonServer', 'CommonServer', `update ${event.group} in readyGroup (${event.apps} apps)`);
    case 'group-deregistered':
      return trace.message('CommonServer', 'CommonServer', `remove ${event.group} from readyGroup`);
    case 'group-registration-failed':
      return trace.note('CommonServer', `group file skipped: ${event.reason}`);
    case 'client-connected':
      trace.phase('Initialisation', { again: true });
      loggingIn.add(event.group);
      return trace.message('Client', 'CommonServer', `Hello (group ${event.group}, client ${event.clientId}) on the common conn from ${event.remote}`);
    case 'login-rejected':
      if (event.group !== undefined) loggingIn.delete(event.group);
      trace.message('CommonServer', 'Client', 'Challenge', { reply: true });
      trace.message('Client', 'CommonServer', 'Login');
      return trace.message('CommonServer', 'Client', `LoginResp error ${event.code}: ${event.reason}`, { reply: true, lost: true });
    case 'app-opened':
      drawLogin(trace, event.group, loggingIn);
      if (event.domains !== undefined)
        return trace.message('appGroup', 'appServer', `route ${event.domains.join(', ')} on the vhost port ${event.port} to ${event.group}/${event.app}`);
      return trace.message('appGroup', 'appServer', `listen ${event.group}/${event.app} on port ${event.port}`);
    case 'vhost-listening':
      trace.phase('Preparation');
      return trace.message('CommonServer', 'CommonServer', `listen on the ${event.kind} vhost port ${event.address}`);
    case 'vhost-refused':
      return trace.note('CommonServer', `${event.kind} vhost closed ${event.remote}: ${event.reason}`);
    case 'app-failed':
      drawLogin(trace, event.group, loggingIn);
      return trace.message('appGroup', 'appServer', `${event.group}/${event.app} cannot listen on ${event.port}: ${event.reason}`, { lost: true });
    case 'app-refused':
      drawLogin(trace, event.group, loggingIn);
      return trace.note('appGroup', `${event.group}/${event.app} refused by ${event.by}: ${event.reason}`);
    case 'app-closed':
      return trace.message('appGroup', 'appServer', `close ${event.group}/${event.app}: ${event.reason}`, { lost: true });
    case 'group-activated': {
      drawLogin(trace, event.group, loggingIn);
      trace.message('appServer', 'appServer', 'wait for User connections');
      const ports = event.apps.map((app) => (app.state === 'listening' ? `${app.name} :${app.remotePort}` : `${app.name} failed`)).join(', ');
      return trace.message('CommonServer', 'Client', `LoginResp (${ports})`, { reply: true });
    }
    case 'heartbeat': {
      const seen = heartbeats.get(event.group) ?? 0;
      heartbeats.set(event.group, seen + 1);
      if (seen > 0) return;
      trace.phase('heartbeat', { again: true });
      return trace.block('loop', `heartbeat of ${event.group}`, () => {
        trace.message('Client', 'CommonServer', `Ping ${event.seq}`);
        trace.message('CommonServer', 'appGroup', 'dispatch it to the appGroup');
        trace.message('appGroup', 'Client', `Pong ${event.seq}`, { reply: true });
      });
    }
    case 'heartbeat-timeout':
      return trace.message('appGroup', 'appGroup', `no heartbeat for ${event.silentMs}ms`, { lost: true });
    case 'user-conn-accepted':
      trace.phase('Proxying');
      if (event.visitor !== undefined)
        trace.message('Client', 'CommonServer', `Visit ${event.group}/${event.app} (visitor ${event.visitor} from ${event.remote}): a stream to each client`);
      else trace.message('User', 'appServer', `connect to ${event.group}/${event.app} from ${event.remote}`);
      trace.message('appServer', 'appServer', `hold the UserConn (pairing ${event.pairingId})`);
      return trace.message('appServer', 'appGroup', 'ask for a work conn');
    case 'user-conn-refused':
      return trace.message('appServer', 'User', `refused: ${event.reason}`, { lost: true });
    case 'visitor-refused':
      return trace.message('CommonServer', 'Client', `VisitRefused (visitor ${event.visitorGroup}/${event.visitor} of ${event.target}: ${event.reason})`, {
        lost: true,
      });
    case 'work-conn-requested':
      return trace.message('appGroup', 'Client', `ReqWorkConn (${event.app}, pairing ${event.pairingId})`);
    case 'mux-conn':
      if (event.state === 'lost') return trace.message('appGroup', 'appGroup', `mux conn lost: ${event.reason ?? 'closed'}`, { lost: true });
      trace.message('appGroup', 'Client', `ReqMuxConn (${event.group})`);
      return trace.message('Client', 'CommonServer', 'NewWorkConn (the mux conn: every user a stream of it)');
    case 'work-conn-joined':
      if (event.mux) {
        trace.message('appGroup', 'Client', `OPEN stream (StartWorkConn ${event.app}, pairing ${event.pairingId}) on the mux conn`);
        trace.message('appServer', 'appServer', 'relay the UserConn on the stream at once');
      } else if (event.pooled) {
        // A work conn the client opened ahead of time: no round trip to the client host.
        trace.message('appGroup', 'Client', `StartWorkConn (${event.app}, pairing ${event.pairingId}) on a pooled work conn`);
        trace.message('appServer', 'appServer', 'join the pooled work conn and the UserConn at once');
      } else {
        trace.message('Client', 'appServer', `NewWorkConn (pairing ${event.pairingId}) on the common port`);
        trace.message('appServer', 'appServer', `validate it, join the work conn and the UserConn (waited ${event.waitedMs}ms)`);
      }
      return trace.message('appServer', 'User', 'bytes flow both ways', { reply: true });
    case 'work-conn-pooled':
      // The pool fills one conn at a time: draw the first, as the reference diagram does.
      if (event.idle !== 1) return;
      trace.message('appGroup', 'Client', `ReqPooledWorkConns (${event.group})`);
      return trace.message('Client', 'CommonServer', 'NewWorkConn (pooled: idle until a user comes)');
    case 'work-conn-failed':
      return trace.message('appServer', 'User', `closed without a work conn: ${event.reason}`, { lost: true });
    case 'conn-closed':
      return trace.message('appServer', 'User', `conn closed (${event.bytesIn} B in, ${event.bytesOut} B out, ${event.durationMs}ms)`, { reply: true });
    case 'udp-session-opened':
      trace.phase('Proxying');
      trace.message('User', 'appServer', `datagram to ${event.group}/${event.app} from ${event.peer}: a new UDP session (pairing ${event.pairingId})`);
      if (event.mux) trace.message('appGroup', 'Client', `OPEN stream (StartWorkConn ${event.app}, pairing ${event.pairingId}, protocol udp) on the mux conn`);
      else if (event.pooled)
        trace.message('appGroup', 'Client', `StartWorkConn (${event.app}, pairing ${event.pairingId}, protocol udp) on a pooled work conn`);
      else return trace.message('appServer', 'appGroup', 'ask for a work conn for the session');
      return trace.message('appServer', 'User', "datagrams both ways, one frame each on the session's stream or work conn", { reply: true });
    case 'udp-session-closed':
      return trace.message(
        'appServer',
        'User',
        `UDP session ${event.peer} closed: ${event.reason} (${event.datagramsIn} datagrams in, ${event.datagramsOut} out)`,
        { reply: true, lost: true },
      );
    case 'udp-dropped':
      return trace.note(
        'appServer',
        `${event.group}/${event.app} dropped ${Object.entries(event.dropped)
          .map(([reason, count]) => `${count} ${reason}`)
          .join(', ')}`,
      );
    case 'traffic':
      return;
    case 'group-deactivated':
      if (event.code === 'CLIENT_LEFT' || event.code === 'CONNECTION_LOST')
        trace.message('Client', 'CommonServer', `${event.code}: ${event.reason}`, { lost: true });
      else trace.message('CommonServer', 'Client', `Goodbye ${event.code}: ${event.reason}`, { lost: true });
      return trace.message('CommonServer', 'CommonServer', `take ${event.group} out of inUseGroup`);
    case 'pool-opened':
      return trace.message(
        'appServer',
        'appServer',
        `pool ${event.pool}: ${event.port === 0 ? 'routed by name on the vhost ports' : `listen on :${event.port}`} (${event.balance}), shared by its members`,
      );
    case 'pool-closed':
      return trace.message('appServer', 'appServer', `pool ${event.pool} closed: ${event.reason}`);
    case 'pool-member-joined':
      return trace.message('appGroup', 'appServer', `${event.group}/${event.app} joins pool ${event.pool}`);
    case 'pool-member-left':
      return trace.message('appGroup', 'appServer', `${event.group}/${event.app} leaves pool ${event.pool}: ${event.reason}`, { lost: true });
    case 'pool-member-health':
      return trace.message('Client', 'appGroup', `HealthReport (${event.app} ${event.healthy ? 'healthy' : 'unhealthy'}: ${event.reason})`);
    case 'pool-user-routed':
      trace.phase('Proxying');
      if (event.retriedFrom !== undefined)
        return trace.message('appServer', 'appServer', `${event.retriedFrom} could not serve the user (${event.reason ?? ''}): retried on ${event.group}`);
      return trace.message('User', 'appServer', `connect to pool ${event.pool} from ${event.remote}: routed to ${event.group}`);
    case 'pool-user-refused':
      return trace.message('appServer', 'User', `reset: pool ${event.pool} ${event.reason}`, { lost: true });
    case 'bad-peer':
      return trace.note('CommonServer', `closed ${event.remote}: ${event.code}: ${event.reason}`);
    case 'login-throttled':
      return trace.note('CommonServer', `logins from ${event.remote} ${event.state} after ${event.failures} failures`);
    default:
      return assertNever(event, 'server event');
  }
}
