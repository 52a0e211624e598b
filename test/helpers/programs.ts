import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { canListenOn } from './net.js';
import { CliProcess } from './processes.js';
import { unusedUdpPort } from './udp.js';

/** Debian programs the UDP tests run behind the tunnel (`.ci/run` installs them). */
export const DNSMASQ = ['/usr/sbin/dnsmasq', '/usr/bin/dnsmasq'].find((path) => existsSync(path));
export const DIG = ['/usr/bin/dig'].find((path) => existsSync(path));

export const skipWithoutDns: false | string =
  DNSMASQ !== undefined && DIG !== undefined ? false : 'dnsmasq or dig is absent: install the Debian packages dnsmasq-base and bind9-dnsutils to run the DNS tests';

/**
 * Starts dnsmasq as this test's own child: no daemon, no DHCP, no resolv.conf, no /etc/hosts,
 * serving only `records` (dnsmasq config lines such as `address=/a.test/10.1.2.3`) on a
 * loopback port free for UDP and TCP (it binds both). Resolves once it has bound them, with
 * its port; a port taken meanwhile by another program is replaced by a fresh one.
 */
export async function startDnsmasq(dir: string, records: string[]): Promise<{ dnsmasq: CliProcess; port: number }> {
  const conf = join(dir, 'dnsmasq.conf');
  writeFileSync(conf, `${records.join('\n')}\n`);
  for (let attempt = 1; ; attempt++) {
    const port = await portFreeForBoth();
    const args = [
      '--no-daemon',
      `--conf-file=${conf}`,
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--no-resolv',
      '--no-hosts',
      '--pid-file=',
      '--log-facility=-',
      // Run as whoever runs the test (root in CI): no switch to a "dnsmasq" user that may not exist.
      `--user=${userInfo().username}`,
    ];
    const dnsmasq = new CliProcess(DNSMASQ!, args, {}, [], { program: true });
    const outcome = await dnsmasq.waitForLine(/started, version|Address already in use/);
    if (!outcome[0].includes('Address already in use')) return { dnsmasq, port };
    await dnsmasq.stop();
    if (attempt === 5) throw new Error(`dnsmasq found no free port in ${attempt} attempts`);
  }
}

/** A loopback port number that was free a moment ago for both UDP and TCP. */
export async function portFreeForBoth(): Promise<number> {
  for (;;) {
    const port = await unusedUdpPort();
    if (await canListenOn(port)) return port;
  }
}

/** What `dig +short` printed, or the failure (dig exits 9 when no server answered). */
export function dig(port: number, name: string, { tcp = false, timeoutS = 2 } = {}): Promise<{ ok: true; answer: string } | { ok: false; code: number | string; output: string }> {
  const args = ['@127.0.0.1', '-p', String(port), name, 'A', '+short', `+time=${timeoutS}`, '+tries=1', ...(tcp ? ['+tcp'] : ['+notcp'])];
  return new Promise((resolve) => {
    execFile(DIG!, args, { timeout: (timeoutS + 5) * 1000 }, (error, stdout, stderr) => {
      if (error) resolve({ ok: false, code: (error as NodeJS.ErrnoException).code ?? 'unknown', output: `${stdout}${stderr}` });
      else resolve({ ok: true, answer: stdout.trim() });
    });
  });
}
