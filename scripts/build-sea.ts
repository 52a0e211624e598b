/**
 * `npm run build:sea` (after `npm run build`): commonserver and groupclient as Node single
 * executable applications, one file each that runs where no Node is installed. Each CLI is
 * bundled with its dependencies into one CommonJS file (esbuild), made into a SEA blob with
 * the files it reads at run time as assets, and injected into a copy of this node (postject).
 *
 * Usage: node dist/scripts/build-sea.js [--out DIR]   (default dist-sea/)
 */
import { build, type Plugin } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { nodeFlagsOf } from '../src/cli/node-flags.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(import.meta.url);
// The fuse Node's SEA loader looks for; postject flips it when it injects the blob.
const SENTINEL_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

interface Postject {
  inject(file: string, resource: string, data: Buffer, options: { sentinelFuse: string }): Promise<void>;
}

/** What each binary reads from the package at run time (src/package-files.ts), by path from the root. */
function assetsOf(binary: 'commonserver' | 'groupclient'): string[] {
  if (binary === 'groupclient') return ['package.json'];
  return [
    'package.json',
    ...readdirSync(join(ROOT, 'src/admin/dashboard')).map((file) => `src/admin/dashboard/${file}`),
    ...readdirSync(join(ROOT, 'contrib/systemd')).map((file) => `contrib/systemd/${file}`),
  ];
}

/**
 * etcd3 loads its gRPC definitions from `${__dirname}/../proto/rpc.proto` when it is first
 * imported; a bundle has no such file. The definitions are parsed here, at build time, with
 * the options etcd3 passes, and handed to proto-loader's fromJSON instead.
 */
const etcdProtoInline: Plugin = {
  name: 'etcd3-proto-inline',
  setup(esbuild) {
    esbuild.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      const call = '(0, proto_loader_1.loadSync)(`${__dirname}/../proto/rpc.proto`, {';
      if (!source.includes(call)) throw new Error(`${args.path}: etcd3 no longer loads its proto as build-sea expects; update etcdProtoInline`);
      // The protobufjs of etcd3's own proto-loader, resolved from etcd3's folder: they are etcd3's
      // dependencies, not ours (a literal name here would read as one of ours left unlisted).
      const protoLoader = createRequire(args.path).resolve(['@grpc', 'proto-loader'].join('/'));
      const protobuf = createRequire(protoLoader)('protobufjs') as {
        Root: new () => { loadSync(file: string, options: { keepCase: boolean }): { toJSON(): unknown } };
      };
      const json = new protobuf.Root().loadSync(join(args.path, '../../proto/rpc.proto'), { keepCase: true }).toJSON();
      return { contents: source.replace(call, `(0, proto_loader_1.fromJSON)(${JSON.stringify(json)}, {`), loader: 'js' };
    });
  },
};

async function buildExecutable(binary: 'commonserver' | 'groupclient', out: string, work: string): Promise<void> {
  const bundle = join(work, `${binary}.cjs`);
  const entry = join(ROOT, `dist/src/cli/${binary}.js`);
  const result = await build({
    entryPoints: [entry],
    // Evaluated before the CLI: package files are read from the executable's assets.
    inject: [join(ROOT, 'dist/src/sea/embedded-files.js')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    write: false,
    plugins: [etcdProtoInline],
    // import.meta is empty in CommonJS; package-files.ts only reads it when not a single executable.
    logOverride: { 'empty-import-meta': 'silent' },
  });
  // The entry's #! line (node's flags) means nothing inside the executable.
  writeFileSync(bundle, result.outputFiles[0]!.text.replace(/^#!.*\n/, ''));
  const blob = join(work, `${binary}.blob`);
  const config = join(work, `${binary}.sea-config.json`);
  writeFileSync(
    config,
    JSON.stringify({
      main: bundle,
      output: blob,
      disableExperimentalSEAWarning: true,
      // V8's compiled code in the blob: a start about a quarter faster on a loaded machine.
      useCodeCache: true,
      // The #! line's V8 flags (src/cli/node-flags.ts). Node 20 ignores the field and runs the
      // executable without them (they cannot be set once the heap exists, and NODE_OPTIONS
      // refuses --initial-old-space-size); a node with SEA execArgv applies them. The #! line's
      // allocator setting (MALLOC_TRIM_THRESHOLD_) is the environment's: set it where the
      // executable is started (docs/operating.md).
      execArgv: nodeFlagsOf(entry),
      assets: Object.fromEntries(assetsOf(binary).map((path) => [path, join(ROOT, path)])),
    }),
  );
  execFileSync(process.execPath, ['--experimental-sea-config', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  const executable = join(out, binary);
  rmSync(executable, { force: true });
  copyFileSync(process.execPath, executable);
  chmodSync(executable, 0o755);
  await (require('postject') as Postject).inject(executable, 'NODE_SEA_BLOB', readFileSync(blob), { sentinelFuse: SENTINEL_FUSE });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string', default: join(ROOT, 'dist-sea') } } });
  if (process.platform !== 'linux') throw new Error(`build-sea makes Linux executables (macOS and Windows also need signing); this is ${process.platform}`);
  const out = resolve(values.out!);
  const work = join(out, 'build');
  mkdirSync(work, { recursive: true });
  for (const binary of ['commonserver', 'groupclient'] as const) {
    await buildExecutable(binary, out, work);
    console.log(`${join(out, binary)}: node ${process.version} ${process.platform}-${process.arch}`);
  }
}

await main();
