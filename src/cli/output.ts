import { formatDuration } from '../config/index.js';
import type { AppBinding } from '../protocol/index.js';

/** How the CLIs' lines write durations (as the config files do: 30s, not 30000ms) and sizes. */
export const seconds = formatDuration;

export function bytes(count: number): string {
  if (count < 1024) return `${count} B`;
  if (count < 1024 ** 2) return `${(count / 1024).toFixed(1)} KiB`;
  if (count < 1024 ** 3) return `${(count / 1024 ** 2).toFixed(1)} MiB`;
  return `${(count / 1024 ** 3).toFixed(2)} GiB`;
}

/** An app of a LoginResp or AppsChanged in a lifecycle line: its port (`/udp` for a UDP app), and its names for a vhost app. */
export function bindingText(app: AppBinding, port: (remotePort: number) => string): string {
  if (app.state !== 'listening') return `${app.name} ✗ (${app.error})`;
  if (app.visibility === 'private') return `${app.name} private${app.protocol === 'udp' ? '/udp' : ''} (visitors only, no public port)`;
  const where = `${port(app.remotePort)}${app.protocol === 'udp' ? '/udp' : ''}`;
  return app.domains === undefined ? `${app.name} → ${where}` : `${app.name} → ${app.domains.join(', ')} on ${where}`;
}
