import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { packageFiles } from '../package-files.js';
import { commandLogger, parseCommand } from './command-line.js';
import { LOG_OPTIONS, LOG_USAGE } from './logger.js';
import { EXIT } from './exit-codes.js';

const UNITS = ['commonserver.service', 'groupclient@.service'] as const;

const USAGE = `usage: commonserver install-units [--prefix DIR] [--out DIR]

  Writes contrib/systemd's commonserver.service and groupclient@.service with ExecStart
  pointing at the binaries where they really are, then says how to enable them.
  --prefix DIR  where npm put the binaries: DIR/bin/commonserver (default: the prefix this
                package was installed under with npm install -g, as npm prefix -g says)
  --out DIR     where to write the units (default: /etc/systemd/system)
${LOG_USAGE}`;

/**
 * The prefix `npm install -g` used for this package: it lives in PREFIX/lib/node_modules/NAME
 * and its binaries in PREFIX/bin (Linux and macOS layouts); for a single executable, the
 * folder above the bin/ it sits in. Undefined when run from a clone or from elsewhere.
 */
function installedPrefix(): string | undefined {
  const root = packageFiles().root;
  if (root === undefined) return basename(dirname(process.execPath)) === 'bin' ? dirname(dirname(process.execPath)) : undefined;
  const modules = dirname(root);
  return basename(modules) === 'node_modules' && basename(dirname(modules)) === 'lib' ? dirname(dirname(modules)) : undefined;
}

/** `commonserver install-units`: the systemd units with the real paths of the binaries. */
export function installUnitsCommand(argv: string[]): number {
  const parsed = parseCommand(
    'commonserver install-units',
    argv,
    { prefix: { type: 'string' }, out: { type: 'string', default: '/etc/systemd/system' }, ...LOG_OPTIONS },
    USAGE,
  );
  if (parsed.exit !== undefined) return parsed.exit;
  const { values } = parsed;
  const log = commandLogger('commonserver install-units', values, USAGE);
  if (log === undefined) return EXIT.failed;
  const { logger } = log;
  const prefix = values.prefix === undefined ? installedPrefix() : resolve(values.prefix);
  if (prefix === undefined) {
    logger.fatal(
      'usage',
      `commonserver install-units: this copy was not installed with npm install -g: name where the binaries are with --prefix DIR (DIR/bin/commonserver)\n\n${USAGE}`,
    );
    return EXIT.failed;
  }
  for (const bin of ['commonserver', 'groupclient']) {
    if (!existsSync(join(prefix, 'bin', bin)))
      logger.warn('no-binary', `warning: ${join(prefix, 'bin', bin)} does not exist: the unit will not start until it does`, {
        file: join(prefix, 'bin', bin),
      });
  }
  const out = values.out!;
  mkdirSync(out, { recursive: true });
  for (const unit of UNITS) {
    const text = packageFiles()
      .read(`contrib/systemd/${unit}`)
      .toString('utf8')
      .replace(/^ExecStart=\S*\/(commonserver|groupclient)\b/m, (_, bin: string) => `ExecStart=${join(prefix, 'bin', bin)}`);
    writeFileSync(join(out, unit), text, { mode: 0o644 });
    logger.info(
      'unit-written',
      `wrote ${join(out, unit)} (ExecStart=${join(prefix, 'bin', unit.startsWith('commonserver') ? 'commonserver' : 'groupclient')} ...)`,
      { file: join(out, unit) },
    );
  }
  logger.info('units-next', 'then: systemctl daemon-reload; systemctl enable --now commonserver (or groupclient@GROUP on a host)');
  return EXIT.ok;
}
