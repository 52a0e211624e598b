import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { CliProcess, COMMONSERVER_BIN } from '../helpers/processes.js';

const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';

test(
  'commonserver install-units --prefix DIR --out DIR: ExecStart names DIR/bin/..., and systemd-analyze verify accepts both units',
  { timeout: 30_000 },
  async (t) => {
    const prefix = mkdtempSync(join(tmpdir(), 'ntp-prefix-'));
    mkdirSync(join(prefix, 'bin'));
    // Stand-ins where npm would have linked the binaries: systemd checks that ExecStart is executable.
    for (const bin of ['commonserver', 'groupclient']) {
      writeFileSync(join(prefix, 'bin', bin), '#!/bin/sh\n');
      chmodSync(join(prefix, 'bin', bin), 0o755);
    }
    const out = join(prefix, 'units');
    const cli = new CliProcess(COMMONSERVER_BIN, ['install-units', '--prefix', prefix, '--out', out]);
    assert.equal((await cli.exited).code, 0, cli.output);
    const server = readFileSync(join(out, 'commonserver.service'), 'utf8');
    const client = readFileSync(join(out, 'groupclient@.service'), 'utf8');
    assert.match(server, new RegExp(`^ExecStart=${join(prefix, 'bin', 'commonserver')} --config /var/lib/commonserver/commonserver.yaml$`, 'm'));
    assert.match(client, new RegExp(`^ExecStart=${join(prefix, 'bin', 'groupclient')} --group %i `, 'm'));
    assert.doesNotMatch(server + client, /^ExecStart=\/usr\/local\/bin\//m);

    // A clone is not an npm install -g: without --prefix it says what to give.
    const guess = new CliProcess(COMMONSERVER_BIN, ['install-units', '--out', join(prefix, 'other')]);
    assert.equal((await guess.exited).code, 2);
    assert.match(guess.output, /not installed with npm install -g: name where the binaries are with --prefix DIR/);

    if (!existsSync(SYSTEMD_ANALYZE)) {
      t.skip(`${SYSTEMD_ANALYZE} is absent (install systemd to check the units with systemd-analyze verify)`);
      return;
    }
    // A template is verified through an instance of it.
    copyFileSync(join(out, 'groupclient@.service'), join(out, 'groupclient@office.service'));
    const run = promisify(execFile);
    const verified = await run(SYSTEMD_ANALYZE, ['verify', join(out, 'commonserver.service'), join(out, 'groupclient@office.service')]).then(
      () => ({ ok: true, output: '' }),
      (error: { stderr?: string; message: string }) => ({ ok: false, output: error.stderr ?? error.message }),
    );
    assert.ok(verified.ok, verified.output);
    // And the shipped units as they are would fail here: /usr/local/bin/commonserver is not where this prefix put it.
    writeFileSync(join(out, 'shipped.service'), server.replace(/^ExecStart=\S+/m, `ExecStart=${join(prefix, 'nowhere', 'commonserver')}`));
    await assert.rejects(run(SYSTEMD_ANALYZE, ['verify', join(out, 'shipped.service')]), /is not executable/);
  },
);
