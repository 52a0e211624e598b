import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { test } from 'node:test';
import { nodeLaunchOf } from '../../src/cli/node-flags.js';
import { CliProcess, COMMONSERVER_BIN, GROUPCLIENT_BIN } from '../helpers/processes.js';
import { REPO_ROOT } from '../helpers/paths.js';

const { version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
/** The lifecycle lines' prefix: a command's own output must not carry it. */
const TIMESTAMP = /^\d\d:\d\d:\d\d /;

async function run(bin: string, args: string[]): Promise<{ code: number | null; stdout: string[]; stderr: string[] }> {
  const cli = new CliProcess(bin, args);
  const { code } = await cli.exited;
  return { code, stdout: cli.lines, stderr: cli.stderr };
}

test('--version: both binaries print their name and the package version, exit 0', { timeout: 20_000 }, async () => {
  for (const [bin, name] of [
    [COMMONSERVER_BIN, 'commonserver'],
    [GROUPCLIENT_BIN, 'groupclient'],
  ] as const) {
    const result = await run(bin, ['--version']);
    assert.equal(result.code, 0);
    assert.deepEqual(result.stdout, [`${name} ${version}`]);
  }
});

test('--help per command: its own usage on stdout, no timestamp, exit 0', { timeout: 30_000 }, async () => {
  const cases: [string, string[], RegExp][] = [
    [COMMONSERVER_BIN, ['--help'], /--no-watch[\s\S]*--log-level LEVEL[\s\S]*--log-format FMT[\s\S]*init[\s\S]*verify/],
    [COMMONSERVER_BIN, ['init', '--help'], /--public-host HOST[\s\S]*Refuses to overwrite/],
    [COMMONSERVER_BIN, ['verify', '--help'], /exit 0: all good; 1: warnings only.*2: the configuration is invalid/],
    [
      GROUPCLIENT_BIN,
      ['-h'],
      /--server-fingerprint[\s\S]*--no-watch[\s\S]*--control-socket PATH[\s\S]*--log-level LEVEL[\s\S]*--log-format FMT[\s\S]*verify[\s\S]*status[\s\S]*reload/,
    ],
    [GROUPCLIENT_BIN, ['status', '--help'], /--json[\s\S]*exit 0: answered; 2: bad usage; 3: no groupclient of that group runs here/],
    [GROUPCLIENT_BIN, ['reload', '--help'], /as SIGHUP does[\s\S]*exit 0: reloaded; 1: the file was not taken/],
    [GROUPCLIENT_BIN, ['verify', '--help'], /without logging in[\s\S]*each server answers[\s\S]*exit 0: all good/],
  ];
  for (const [bin, args, own] of cases) {
    const result = await run(bin, args);
    const text = result.stdout.join('\n');
    assert.equal(result.code, 0, `${args.join(' ')}: ${text}`);
    assert.match(result.stdout[0] ?? '', /^usage: (commonserver|groupclient)/, args.join(' '));
    assert.match(text, own, args.join(' '));
    assert.equal(result.stdout.filter((line) => TIMESTAMP.test(line)).length, 0, `${args.join(' ')} printed a timestamp`);
  }
});

test("a bad argument is refused with exit 2 and the command's usage on stderr", { timeout: 20_000 }, async () => {
  const unknownOption = await run(COMMONSERVER_BIN, ['verify', '--no-such-option']);
  assert.equal(unknownOption.code, 2);
  // In our words, not parseArgs' (which suggests "-- \"--no-such-option\"", a positional no command takes).
  assert.match(
    unknownOption.stderr.join('\n'),
    /^commonserver verify: unknown option --no-such-option \(the options are below\)\n\nusage: commonserver verify/,
  );
  assert.doesNotMatch(unknownOption.stderr.join('\n'), /positional argument/);
  const missing = await run(GROUPCLIENT_BIN, ['--config']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr.join('\n'), /^groupclient: --config needs a value\n\nusage: groupclient/);
  const switchValue = await run(COMMONSERVER_BIN, ['--no-watch=yes']);
  assert.equal(switchValue.code, 2);
  assert.match(switchValue.stderr.join('\n'), /^commonserver: --no-watch takes no value \(it is a switch\)\n\nusage: commonserver/);
  const unknownCommand = await run(COMMONSERVER_BIN, ['serve']);
  assert.equal(unknownCommand.code, 2);
  assert.match(unknownCommand.stderr.join('\n'), /unknown command "serve"/);
  const both = await run(COMMONSERVER_BIN, ['init', 'somewhere', '--config', 'commonserver.yaml']);
  assert.equal(both.code, 2);
  assert.match(both.stderr.join('\n'), /init DIR.*or an existing config.*not both/);
  // verify takes the log options of the command line it checks, and refuses bad ones as the run would.
  const badFormat = await run(GROUPCLIENT_BIN, ['verify', '--config', 'any.yaml', '--log-format', 'xml']);
  assert.equal(badFormat.code, 2);
  assert.match(badFormat.stderr.join('\n'), /groupclient verify: --log-format: expected one of text, json, got "xml"/);
  const badLevel = await run(COMMONSERVER_BIN, ['init', '--log-level', 'loud']);
  assert.equal(badLevel.code, 2);
  assert.match(badLevel.stderr.join('\n'), /commonserver init: --log-level: [\s\S]*usage: commonserver init/);
  const noGroup = await run(GROUPCLIENT_BIN, ['verify']);
  assert.equal(noGroup.code, 2);
  assert.match(noGroup.stderr.join('\n'), /name a group with --group NAME/);
});

/** How the kernel runs `bin` through its `#!` line: the interpreter, the rest of the line as one argument, then the script. */
function throughShebang(bin: string): { program: string; args: string[] } {
  const line = readFileSync(bin, 'utf8').split('\n', 1)[0]!.slice('#!'.length);
  const space = line.indexOf(' ');
  return space === -1 ? { program: line, args: [bin] } : { program: line.slice(0, space), args: [line.slice(space + 1), bin] };
}

test(
  'both binaries run with the V8 flags and allocator setting of their #! line, started through it (as installed, as systemd starts them) or by node',
  { timeout: 20_000 },
  async () => {
    // `#!/usr/bin/env -S node …` finds node on the PATH: this one.
    const env = { DEBUG: 'ntp:cli', PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}` };
    for (const bin of [COMMONSERVER_BIN, GROUPCLIENT_BIN]) {
      assert.deepEqual(
        nodeLaunchOf(bin),
        { env: { MALLOC_TRIM_THRESHOLD_: '134217728' }, flags: ['--initial-old-space-size=64', '--max-semi-space-size=2'] },
        `${bin}'s #! line`,
      );
      const shebang = throughShebang(bin);
      for (const cli of [
        new CliProcess(shebang.program, [...shebang.args, '--version'], env, [], { program: true }),
        new CliProcess(bin, ['--version'], env),
      ]) {
        assert.equal((await cli.exited).code, 0, cli.output);
        const said = cli.stderr.find((line) => line.includes('ntp:cli'));
        assert.match(said ?? '', /with flags \[--initial-old-space-size=64 --max-semi-space-size=2\], MALLOC_TRIM_THRESHOLD_=134217728/, cli.output);
      }
    }
  },
);
