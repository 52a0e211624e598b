import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/**
 * A client id that stays the same across restarts on the same host (so a restarted agent
 * takes its group over at once) and differs between hosts (so a second host serving the same
 * group is refused while the first is live). Derived from the machine id when the OS has one.
 */
export function defaultClientId(group: string): string {
  let machine = hostname();
  for (const file of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    try {
      machine += readFileSync(file, 'utf8').trim();
      break;
    } catch {
      // not on this OS; the hostname alone will do
    }
  }
  const digest = createHash('sha256').update(`${machine}\0${group}`).digest('base64url').slice(0, 16);
  return `${hostname().slice(0, 32)}-${digest}`;
}
