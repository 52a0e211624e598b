import { appProtocol, type AppSpec } from '../../config/index.js';
import type { AppDeclaration } from '../../protocol/index.js';

/**
 * How the client's own group file differs from the server's registry entry, as warnings for
 * the login (both sides log them). The server's registry is the authority; differences are
 * reported, never guessed at. A client that takes its apps from the server (`takesApps`)
 * needs none in its file; the ones it has are still compared.
 */
export function compareWithClient(registered: readonly AppSpec[], declaredApps: readonly AppDeclaration[], takesApps = false): string[] {
  const warnings: string[] = [];
  const declared = new Map(declaredApps.map((app) => [app.name, app]));
  for (const app of registered) {
    const mine = declared.get(app.name);
    // A client that takes its apps from the server (GroupApps) serves this one without it in its file.
    if (mine === undefined) {
      if (!takesApps) warnings.push(`app "${app.name}" is registered on the server but missing from the client's group file: its users will be refused`);
    } else if (mine.remotePort !== app.remotePort && !(app.pool !== undefined && mine.remotePort === 0)) {
      warnings.push(
        `app "${app.name}": the server's registry says remotePort ${app.remotePort}, the client's file says ${mine.remotePort}; the server's applies`,
      );
    } else if ((mine.protocol ?? 'tcp') !== appProtocol(app)) {
      warnings.push(
        `app "${app.name}": the server's registry says type ${app.type ?? 'tcp'}, the client's file says ${mine.protocol ?? 'tcp'}${takesApps ? "; the server's applies (the client takes its apps from the server)" : ': its users will be refused until both agree'}`,
      );
    }
    if (mine !== undefined && mine.proxyProtocol !== app.proxyProtocol) {
      warnings.push(
        `app "${app.name}": the server's registry says proxyProtocol ${app.proxyProtocol ?? 'none'}, the client's file says ${mine.proxyProtocol ?? 'none'}; ${takesApps ? "the server's applies (the client takes its apps from the server)" : "the client's applies (it writes the header)"}`,
      );
    }
  }
  for (const name of declared.keys()) {
    if (!registered.some((app) => app.name === name)) {
      warnings.push(`app "${name}" is in the client's group file but not in the server's registry: it is not exposed`);
    }
  }
  return warnings;
}
