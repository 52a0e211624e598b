import type { MuxStream } from '../../net/index.js';
import { proofsMatch, visitProof, type StartWorkConn, type UserAddress, type Visit, type VisitRefused } from '../../protocol/index.js';
import type { AppServer } from '../public/app-server.js';
import type { EmitServerEvent } from '../events.js';
import type { VisitorConn } from './visitor-conn.js';

/** The visiting group's session, as a visit needs it. */
export interface VisitingGroup {
  readonly name: string;
  /** The visiting client's address as the server sees it (its control conn), if still known. */
  readonly visitorAddress: UserAddress | undefined;
  /** A stream to the visiting client on its mux conn, or undefined while there is none. */
  openVisitorStream(start: StartWorkConn): MuxStream | undefined;
  send(message: VisitRefused): void;
}

/** The owning group's session, as a visit needs it. */
export interface OwningGroup {
  readonly name: string;
  /** The open private app of that name, or undefined (none, public, or not open). */
  privateApp(name: string): AppServer | undefined;
  /** Serves the visitor as one of the app's users; its refusal, if the app would not admit it. */
  admitVisitor(app: AppServer, conn: VisitorConn): string | undefined;
  /** Tells the owner's client a visit was refused (at a bounded rate). */
  noticeVisitRefused(message: VisitRefused): void;
}

/**
 * One Visit, from its check to its user's relay: the owner's registry entry decides (the app
 * is private and open, the visitor's group is in its allowVisitors, the proof matches its
 * visitorSecret, the types agree, its allow list and caps admit the visiting host), then a
 * stream to the visiting client carries the visitor's user to the app exactly as a public
 * user's socket would (`serveUser`). A refusal reaches both clients and the events.
 */
export function serveVisit(visit: Visit, visitor: VisitingGroup, owner: OwningGroup | undefined, emit: EmitServerEvent): void {
  const app = owner?.privateApp(visit.app);
  const address = visitor.visitorAddress;
  const refuse = (reason: string): void => {
    const refused: VisitRefused = { type: 'VisitRefused', visitorGroup: visitor.name, visitor: visit.visitor, group: visit.group, app: visit.app, reason };
    visitor.send({ ...refused, visitId: visit.visitId });
    // Only an owner that has the app hears of it: a visitor cannot reach other groups' clients by naming them.
    if (app !== undefined) owner?.noticeVisitRefused(refused);
    emit({ type: 'visitor-refused', visitorGroup: visitor.name, visitor: visit.visitor, target: `${visit.group}/${visit.app}`, reason });
  };
  if (owner === undefined) return refuse(`group ${visit.group} is not online on this server`);
  if (app === undefined) return refuse(`group ${visit.group} has no private app ${visit.app}`);
  const rules = app.spec;
  if (!(rules.allowVisitors ?? []).includes(visitor.name)) return refuse('not in allowVisitors');
  if (rules.visitorSecret !== undefined) {
    const expected = visitProof(rules.visitorSecret.reveal(), visitor.name, visit.group, visit.app, visit.visitId);
    if (visit.proof === undefined || !proofsMatch(expected, visit.proof)) return refuse('the visitor secret does not match');
  }
  const appProtocol = rules.type === 'udp' ? 'udp' : 'tcp';
  const visitProtocol = visit.protocol ?? 'tcp';
  if (appProtocol !== visitProtocol) return refuse(`the app is ${appProtocol}, the visitor is ${visitProtocol}`);
  if (address === undefined) return refuse("the visitor's address is unknown (its control conn closed)");
  const refusal = app.refusalFor(address.remoteAddress);
  if (refusal !== undefined) return refuse(refusal);
  const start: StartWorkConn = {
    type: 'StartWorkConn',
    app: visit.visitor,
    pairingId: visit.visitId,
    visit: true,
    ...(visit.protocol ? { protocol: visit.protocol } : {}),
  };
  const stream = visitor.openVisitorStream(start);
  if (stream === undefined) return refuse("the visitor's mux conn is not up (visitors need mux)");
  // Handed back destroyed at the visiting session's cap of streams: it says why.
  if (stream.destroyed) return refuse(`the visitor's mux conn refused a stream: ${stream.errored?.message ?? 'closed'}`);
  const conn: VisitorConn = Object.assign(stream, address, { visitor: visitor.name });
  const late = owner.admitVisitor(app, conn);
  if (late !== undefined) refuse(late);
}
