import { MuxStream } from '../../net/index.js';
import type { UserAddress } from '../../protocol/index.js';

/**
 * A visitor's user as its owner's app sees it: the stream the server opened to the visiting
 * client, standing where a public user's socket stands in `serveUser`, with the visiting host's
 * address (its control conn's) as the user's, for the allow list and the PROXY protocol header.
 */
export type VisitorConn = MuxStream & UserAddress & { readonly visitor: string };

/** The visiting group when `conn` is a visitor's user, for events and the owner's StartWorkConn. */
export function visitorOf(conn: object): string | undefined {
  return conn instanceof MuxStream && 'visitor' in conn && typeof conn.visitor === 'string' ? conn.visitor : undefined;
}
