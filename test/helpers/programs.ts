import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { CliProcess } from './processes.js';

/** Debian programs the UDP tests run behind the tunnel (`.ci/run` installs them). */
export const DNSMASQ = ['/usr/sbin/dnsmasq', '/usr/bin/dnsmasq'].find((path) => existsSync(path));
export const DIG = ['/usr/bin/dig'].find((path) => existsSync(path));

export const skipWithoutDns: false | string =
  DNSMASQ !== undefined && DIG !== undefined ? false : 'dnsmasq or dig is absent: install the Debian packages dnsmasq-base and bind9-dnsutils to run the DNS tests';

/**
 * Starts dnsmasq as this test's own child: no daemon, no DHCP, no resolv.conf, no /etc/hosts,
 * serving only `records` (dnsmasq config lines such as `address=/a.test/10.1.2.3`) on
 * 127.0.0.1:`port`, UDP and TCP. Resolves once it has bound its sockets.
 */
export async function startDnsmasq(dir: string, port: number, records: string[]): Promise<CliProcess> {
  const conf = join(dir, 'dnsmasq.conf');
  writeFileSync(conf, `${records.join('\n')}\n`);
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
  await dnsmasq.waitForLine(/started, version/);
  return dnsmasq;
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
