import { assertNever } from '../protocol/index.js';
import type { Observable, Subscription } from 'rxjs';
import { observe, type ObserverFailure } from '../net/index.js';
import type { ClientEvent } from '../client/index.js';
import type { GroupSpec } from '../config/index.js';
import { MermaidTrace } from './mermaid.js';

/**
 * Draws a groupclient's real session as the reference sequence diagram, from the client's
 * side: its wire messages with the server and its dials to the LocalApps. What the drawing
 * throws goes to `onFailure` (the client's InternalErrors): a trace never ends the process.
 */
export function traceClient(events$: Observable<ClientEvent>, spec: GroupSpec, file: string, onFailure: ObserverFailure): { close(): Promise<void> } {
  const trace = new MermaidTrace(file);
  let heartbeats = 0;
  const flushHeartbeats = (): void => {
    if (heartbeats > 1) trace.note('CommonServer, Client', `${heartbeats - 1} more heartbeat(s)`);
    if (heartbeats > 0) heartbeats = 1;
  };
  trace.phase('Preparation');
  trace.message('Client', 'Client', `build the LocalApp objects (${spec.apps.map((app) => app.name).join(', ')})`);
  const subscription: Subscription = observe(events$, 'trace', (event) => drawClientEvent(event), onFailure);
  function drawClientEvent(event: ClientEvent): void {
    if (event.type !== 'heartbeat') flushHeartbeats();
    switch (event.type) {
      case 'connecting':
        trace.phase('Initialisation', { again: true });
        return trace.message('Client', 'CommonServer', `connect the common conn to ${event.server} (attempt ${event.attempt})`);
      case 'connect-failed':
        return trace.message('Client', 'CommonServer', `cannot connect: ${event.reason}`, { lost: true });
      case 'login-accepted': {
        trace.message('Client', 'CommonServer', `Hello (group ${spec.name})`);
        trace.message('CommonServer', 'Client', 'Challenge', { reply: true });
        trace.message('Client', 'CommonServer', 'Login');
        const ports = event.apps.map((app) => (app.state === 'listening' ? `${app.name} :${app.remotePort}` : `${app.name} failed`)).join(', ');
        trace.message('CommonServer', 'Client', `LoginResp (${ports})`, { reply: true });
        heartbeats = 0;
        return trace.message('Client', 'Client', "remember each app's public port");
      }
      case 'login-rejected':
        return trace.message('CommonServer', 'Client', `LoginResp error ${event.code}: ${event.reason}`, { reply: true, lost: true });
      case 'heartbeat':
        if (heartbeats++ > 0) return;
        trace.phase('heartbeat', { again: true });
        return trace.block('loop', 'heartbeat', () => {
          trace.message('Client', 'CommonServer', `Ping ${event.seq}`);
          trace.message('CommonServer', 'appGroup', 'dispatch it to the appGroup');
          trace.message('appGroup', 'Client', `Pong ${event.seq}`, { reply: true });
        });
      case 'heartbeat-timeout':
        return trace.message('Client', 'Client', `no heartbeat from the server for ${event.silentMs}ms`, { lost: true });
      case 'work-conn-requested':
        trace.phase('Proxying');
        if (event.mux) trace.message('appGroup', 'Client', `OPEN stream (StartWorkConn ${event.app}, pairing ${event.pairingId}) on the mux conn`);
        else if (event.pooled) trace.message('appGroup', 'Client', `StartWorkConn (${event.app}, pairing ${event.pairingId}) on a pooled work conn`);
        else trace.message('appGroup', 'Client', `ReqWorkConn (${event.app}, pairing ${event.pairingId})`);
        return trace.message('Client', 'Client', `look up app ${event.app}`);
      case 'local-dial-failed':
        trace.message('Client', 'LocalApp', `dial ${event.target}: ${event.reason}`, { lost: true });
        return trace.message('Client', 'CommonServer', 'WorkConnFailed');
      case 'health-changed':
        trace.message('Client', 'LocalApp', `health check of ${event.app}: ${event.reason}`);
        return trace.message('Client', 'appGroup', `HealthReport (${event.app} ${event.healthy ? 'healthy' : 'unhealthy'})`);
      case 'pool-requested':
        trace.message('appGroup', 'Client', `ReqPooledWorkConns (${event.count} ids)`);
        return trace.message('Client', 'CommonServer', `NewWorkConn × ${event.count} (pooled: idle until users come)`);
      case 'pool-trimmed':
        return trace.note('Client', `${event.asked - event.opened} pooled work conns not opened: at most ${event.cap} may be opening or idle`);
      case 'mux-stream-refused':
        // The first of a flood tells the story; a note per OPEN would drown the diagram.
        if (event.refusedOnConn > 1) return;
        return trace.note('Client', `OPEN refused with an RST: ${event.cap} users already on the mux conn (--max-mux-streams)`);
      case 'work-conn-opened':
        trace.message('Client', 'LocalApp', `dial the local app ${event.app}`);
        trace.message('LocalApp', 'Client', 'localConn', { reply: true });
        // A pooled work conn presented its NewWorkConn when the pool was filled, the mux conn when it was asked for.
        if (!event.pooled && event.mux !== true) trace.message('Client', 'appServer', `NewWorkConn (pairing ${event.pairingId}) on the common port`);
        return trace.message('Client', 'Client', 'join localConn and remoteConn');
      case 'conn-closed':
        return trace.message('LocalApp', 'Client', `conn closed (${event.bytesIn} B in, ${event.bytesOut} B out, ${event.durationMs}ms)`, { reply: true });
      case 'udp-session-opened':
        trace.message('Client', 'LocalApp', `open a local UDP socket for ${event.app}, connected to its target (one per session)`);
        if (!event.pooled && event.mux !== true) trace.message('Client', 'appServer', `NewWorkConn (pairing ${event.pairingId}) on the common port`);
        return trace.message('Client', 'Client', "relay datagrams between the local socket and the session's stream or work conn, one frame each");
      case 'udp-session-closed':
        return trace.message(
          'LocalApp',
          'Client',
          `UDP session closed: ${event.reason === 'end' ? 'ended by the server' : event.reason} (${event.datagramsIn} datagrams in, ${event.datagramsOut} out, ${event.dropped} dropped)`,
          { reply: true },
        );
      case 'visitor-listening':
        return trace.note('Client', `visitor ${event.visitor} listens on ${event.protocol} ${event.bind} for ${event.target}`);
      case 'visitor-failed':
        return trace.note('Client', `visitor ${event.visitor} cannot listen on ${event.bind}: ${event.reason}`);
      case 'visitor-refused':
        if (event.byServer) trace.message('CommonServer', 'Client', `VisitRefused (${event.group}/${event.app}: ${event.reason})`, { lost: true });
        return trace.message('Client', 'User', `reset the visitor's user: ${event.reason}`, { lost: true });
      case 'visit-refused':
        return trace.message('CommonServer', 'Client', `VisitRefused notice (${event.visitorGroup}/${event.visitor} for ${event.app}: ${event.reason})`);
      case 'visitor-arrived':
        return trace.message('CommonServer', 'Client', `OPEN stream (StartWorkConn ${event.app}, visitor of ${event.visitorGroup})`);
      case 'visitor-conn-closed':
        return trace.message('User', 'Client', `visitor ${event.visitor}: conn closed (${event.bytesIn} B in, ${event.bytesOut} B out)`, { reply: true });
      case 'spec-reloaded':
        return trace.message('Client', 'Client', `reload the group file (${event.apps.join(', ')})`);
      case 'session-lost':
        return trace.message('CommonServer', 'Client', `${event.code ? `Goodbye ${event.code}` : 'session lost'}: ${event.reason}`, { lost: true });
      case 'stopped':
        return trace.message('Client', 'CommonServer', `Goodbye: ${event.reason}`, { lost: true });
      case 'apps-changed':
        return trace.message(
          'CommonServer',
          'Client',
          `AppsChanged (opened ${event.opened.map((app) => app.name).join(', ') || 'none'}, closed ${event.closed.join(', ') || 'none'})`,
        );
      case 'apps-received':
        return trace.message('CommonServer', 'Client', `GroupApps (${event.apps.map((app) => app.name).join(', ') || 'none'} served)`);
      case 'app-refused':
        return trace.message('Client', 'CommonServer', `AppsRefused (${event.app}: ${event.reason})`);
      default:
        return assertNever(event, 'client event');
    }
  }
  return {
    close: () => {
      subscription.unsubscribe();
      flushHeartbeats();
      return trace.close();
    },
  };
}
