/** "address:port" of a socket's peer, for log lines ("[v6]:port" for IPv6). */
export function peerOf(socket: { readonly remoteAddress?: string | undefined; readonly remotePort?: number | undefined }): string {
  const { remoteAddress, remotePort } = socket;
  if (remoteAddress === undefined) return 'unknown peer';
  return remoteAddress.includes(':') ? `[${remoteAddress}]:${remotePort}` : `${remoteAddress}:${remotePort}`;
}
