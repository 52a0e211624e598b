import type { Socket } from 'node:net';
import type { AppSpec, HostPort } from '../config/index.js';
import { dialCommon, dialTcp, type ClientTransport } from '../net/index.js';
import { encodeFrame, joinProof, type NewWorkConn } from '../protocol/index.js';

export interface WorkConnRequest {
  server: HostPort;
  transport: ClientTransport;
  app: AppSpec;
  sessionId: string;
  pairingId: string;
  secret: string;
  dialTimeoutMs: number;
}

export type WorkConnResult =
  | { ok: true; localConn: Socket; workConn: Socket }
  | { ok: false; stage: 'local' | 'server'; reason: string };

/**
 * Dials the app's local target first (so a dead app is reported at once, without opening
 * anything on the server), then a work conn to the common port that presents the pairing.
 * Nothing is read from the local app until the caller joins the two: a server-speaks-first
 * banner waits in the kernel meanwhile.
 */
export async function openWorkConn(request: WorkConnRequest): Promise<WorkConnResult> {
  let localConn: Socket;
  try {
    localConn = await dialTcp(request.app.local, request.dialTimeoutMs);
  } catch (error) {
    return { ok: false, stage: 'local', reason: (error as Error).message };
  }
  localConn.on('error', ignoreUntilJoined);
  let workConn: Socket;
  try {
    workConn = await dialCommon(request.server, request.transport, request.dialTimeoutMs);
  } catch (error) {
    localConn.destroy();
    return { ok: false, stage: 'server', reason: (error as Error).message };
  }
  workConn.on('error', ignoreUntilJoined);
  const message: NewWorkConn = {
    type: 'NewWorkConn',
    sessionId: request.sessionId,
    pairingId: request.pairingId,
    proof: joinProof(request.secret, request.sessionId, request.pairingId),
  };
  workConn.write(encodeFrame(message));
  return { ok: true, localConn, workConn };
}

// joinConns installs the real handlers; until then an error just waits to be seen as a close.
function ignoreUntilJoined(): void {}
