import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { CliProcess, COMMONSERVER_BIN } from '../helpers/processes.js';
import { CONFIG_FIXTURES } from '../helpers/paths.js';

const bombFixture = join(CONFIG_FIXTURES, 'invalid', 'groups', 'alias-bomb.yaml');

test(
  'a YAML alias bomb affects only its own file: the commonserver starts, other groups load and reload, the admin API answers 400',
  { timeout: 60_000 },
  async () => {
    const secret = randomSecret();
    const config = makeConfigDir([{ name: 'good', secret, apps: [{ name: 'a', localPort: 1 }] }], { tls: true, extra: { admin: { bind: '127.0.0.1:0' } } });
    const bombFile = join(config.groupsDir, 'alias-bomb.yaml');
    copyFileSync(bombFixture, bombFile);
    const server = new CliProcess(COMMONSERVER_BIN, ['--config', config.serverFile]);
    after(() => server.stop());
    await server.waitForLine(/commonserver listening on/);
    assert.ok(
      server.lines.some((line) => line.includes(`group file skipped: ${bombFile}:6:`) && /aliases/.test(line)),
      server.lines.join('\n'),
    );
    assert.ok(server.lines.some((line) => /group good registered \(1 app\)/.test(line)));
    const url = (await server.waitForLine(/admin listening on (http:\/\/\S+)/))[1]!;

    const from = server.lines.length;
    config.writeGroup({
      name: 'good',
      secret,
      apps: [
        { name: 'a', localPort: 1 },
        { name: 'b', localPort: 2 },
      ],
    });
    await server.waitForLine(/group good updated \(2 apps\)/, { fromLine: from });

    const bomb = readFileSync(bombFixture, 'utf8');
    const send = async (method: string, path: string, body: string) => {
      const res = await fetch(`${url}${path}`, { method, headers: { 'content-type': 'application/yaml' }, body });
      return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } };
    };
    const created = await send('POST', '/api/groups', bomb);
    assert.equal(created.status, 400);
    assert.equal(created.body.error?.code, 'CONFIG_PARSE');
    assert.match(created.body.error?.message ?? '', /^request body:\d+: .*aliases/);
    const replaced = await send('PUT', '/api/groups/good', bomb.replace('name: alias-bomb', 'name: good'));
    assert.equal(replaced.status, 400);
    assert.equal(replaced.body.error?.code, 'CONFIG_PARSE');
    assert.match(readFileSync(config.groupFile('good'), 'utf8'), /name: b/, 'the good file is untouched');
    // The server is still serving its registry.
    const groups = (await (await fetch(`${url}/api/readyGroup`)).json()) as { groups: { name: string }[] };
    assert.deepEqual(
      groups.groups.map((group) => group.name),
      ['good'],
    );
  },
);
