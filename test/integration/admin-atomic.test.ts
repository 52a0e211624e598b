import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { writeFileAtomic } from '../../src/server/index.js';
import { loadGroupDirectory, schemaComment } from '../../src/config/index.js';
import { startAdmin } from '../helpers/admin.js';
import { groupYaml, makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startServer } from '../helpers/in-process.js';
import { DIST_ROOT } from '../helpers/paths.js';

const CRASH_WRITE = join(DIST_ROOT, 'test', 'helpers', 'crash-write.js');

test('a process killed between write and rename leaves the old group file intact', { timeout: 20_000 }, async () => {
  const config = makeConfigDir([{ name: 'keep', secret: randomSecret(), apps: [{ name: 'web', localPort: 8080 }] }]);
  const file = config.groupFile('keep');
  const before = readFileSync(file, 'utf8');
  const child = spawn(process.execPath, [CRASH_WRITE, file, groupYaml({ name: 'keep', secret: randomSecret(), apps: [{ name: 'other', localPort: 9090 }] })], {
    stdio: 'ignore',
  });
  const [code, signal] = await once(child, 'exit');
  assert.equal(signal, 'SIGKILL', `the writer must die mid-write (exit code ${code})`);
  assert.equal(readFileSync(file, 'utf8'), before);
  // The crash leaves its temp file behind, and the registry loader does not take it for a group.
  assert.equal(readdirSync(config.groupsDir).filter((name) => name.endsWith('.tmp')).length, 1);
  const loaded = loadGroupDirectory(config.groupsDir);
  assert.deepEqual(
    loaded.groups.map((g) => g.name),
    ['keep'],
  );
  assert.deepEqual(
    loaded.groups[0]!.apps.map((a) => a.name),
    ['web'],
  );
  assert.deepEqual(loaded.errors, []);
});

test('a failed rename through the API answers 500, keeps the old file and the registered version', { timeout: 20_000 }, async () => {
  const config = makeConfigDir([{ name: 'keep', secret: randomSecret(), apps: [{ name: 'web', localPort: 8080 }] }]);
  const { server } = await startServer(config);
  let failNext = true;
  const api = await startAdmin(server, config, {
    writeHooks: {
      beforeRename: () => {
        if (failNext) throw Object.assign(new Error('EIO: injected failure before rename'), { code: 'EIO' });
      },
    },
  });
  after(async () => {
    await api.admin.close();
    await server.close();
  });
  const before = readFileSync(config.groupFile('keep'), 'utf8');
  const change = { name: 'keep', secret: randomSecret(), apps: [{ name: 'other', local: '127.0.0.1:9090', remotePort: 0 }] };
  const failed = await api.request('PUT', '/api/groups/keep', change);
  assert.equal(failed.status, 500);
  assert.equal(failed.body.error.code, 'REGISTRY_WRITE_FAILED');
  assert.match(failed.body.error.message, /the registry was not changed: EIO: injected failure before rename/);
  assert.equal(readFileSync(config.groupFile('keep'), 'utf8'), before);
  assert.deepEqual(readdirSync(config.groupsDir), ['keep.yaml'], 'the temp file is cleaned up');
  assert.deepEqual(
    server.readyGroup.get('keep')?.apps.map((a) => a.name),
    ['web'],
  );

  failNext = false;
  assert.equal((await api.request('PUT', '/api/groups/keep', change)).status, 200);
  assert.deepEqual(
    server.readyGroup.get('keep')?.apps.map((a) => a.name),
    ['other'],
  );
  // What the API writes is a group file an editor checks against the installed schema.
  assert.equal(readFileSync(config.groupFile('keep'), 'utf8').split('\n')[0], schemaComment('group', config.groupFile('keep')));
});

test('writeFileAtomic replaces the content whole', { timeout: 10_000 }, async () => {
  const config = makeConfigDir([]);
  const file = join(config.groupsDir, 'x.yaml');
  await writeFileAtomic(file, 'one\n');
  await writeFileAtomic(file, 'two\n');
  assert.equal(readFileSync(file, 'utf8'), 'two\n');
  assert.deepEqual(readdirSync(config.groupsDir), ['x.yaml']);
});
