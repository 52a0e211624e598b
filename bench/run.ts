/**
 * `npm run bench`: the tunnel against this machine's limits, on loopback only.
 * Paths: direct (no relay), two chained bare Node relays (plaintext, and TLS between the
 * hops), and the real commonserver + groupclient as child processes. See --help.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startEchoApp, type TestApp } from '../test/helpers/apps.js';
import { BASELINE_PATH_NAMES, makeCert, openPath, OPT_IN_PATH_NAMES, PATH_NAMES, type BenchPath, type PathName } from './paths.js';
import { checkTools, cpuMs, minorFaults, missingTools, killAll, median, startDaemon, stopDaemon } from './proc.js';
import {
  connChurn,
  connSetup,
  idleConns,
  restingRss,
  iperf,
  redisBench,
  slowReader,
  stalledUsers,
  startEchoProcess,
  startSourceApp,
  type Pids,
} from './workloads.js';
import { printTable, type Figures } from './table.js';
import { judgeTargets, printTargets } from './targets.js';
import { compareWithReference, gaugeFigures, printCheck, readReference, writeReference } from './check.js';
import { HTTP_PATHS, httpLoad, openHttpPaths, type HttpFigures, type HttpPath } from './http.js';
import { DEFAULT_UDP_RATES, iperfUdp, openUdpPath, printUdpTable, UDP_PATHS, type UdpSample } from './udp.js';

const FIGURES = ['throughput', 'udp', 'setup', 'churn', 'redis', 'rest', 'idle', 'slow', 'stalled', 'limited', 'login', 'http'] as const;
type Figure = (typeof FIGURES)[number];

const USAGE = `usage: npm run bench -- [options]
  --only LIST      figures: ${FIGURES.join(',')} (default: all)
  --paths LIST     paths: ${PATH_NAMES.join(',')} (default: all), and ${OPT_IN_PATH_NAMES.join(',')} (each target a private
                   app reached through a visitor: compare with tunnel-tls, e.g. --only setup,throughput)
  --runs N         runs per figure; medians are reported (default 3)
  --quick          one short run of everything (runs 1, fewer conns, shorter tests)
  --conns N        sequential conns for the setup figure (default 2000)
  --churn-conns N  conns for each churn row: 50 and 200 users at once, a new conn per request (default 4000)
  --rest-seconds N rest figure: RSS this long after the tunnel is up, before any user (default 10)
  --idle-conns N   simultaneous idle conns (default 10000, capped by the open-files limit)
  --seconds N      iperf3 duration per test (default 3)
  --udp-rates LIST offered rates of the udp figure (default ${DEFAULT_UDP_RATES.join(',')}; paths direct, tunnel, tunnel-tls)
  --slow-seconds N slow reader duration (default 20)
  --stalled-users N stalled figure: users of a flooding app who never read (default 200)
  --baseline DIR   also run the tunnel from another build (DIR holds its dist/ and node_modules/) as
                   tunnel-base and tunnel-tls-base, in the same run: an A/B of a change
  --http-conns N   keep-alive conns of the http figure (autocannon; default 32)
  --http-seconds N duration per path of the http figure (default 5)
  --pool N         the tunnel's work-conn pool size (default: the commonserver's default)
  --limit-mb N     the bandwidth of the tunnel's limited app, MB/s each way (limited figure; default 8)
  --logins N       login figure: sequential logins on a single server and on a cluster node (default 200)
  --groups N       login figure: groups activated at once across three cluster nodes (default 1000; 0 skips)
  --concurrency N  login figure: clients logging in at the same time among those groups (default 50)
  --cpu-prof DIR   write CPU profiles of the tunnel's processes to DIR (summarise: node dist/bench/profile-summary.js FILE)
  --out FILE       JSON output (default bench/results/latest.json); --no-json to skip
  --check          regression gate: compare CPU-seconds per GB, full GCs (throughput figure) and the
                   setup ratio (setup figure) with the reference; exit 1 if one is more than
                   --tolerance worse
  --save-reference write this run's gauges as the reference (commit it with the table it comes from)
  --reference FILE the reference file (default bench/reference.json)
  --tolerance F    how much worse a gauge may be before --check fails (default 0.15)`;

const benchDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench');
const resultsDir = join(benchDir, 'results');

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      paths: { type: 'string' },
      runs: { type: 'string' },
      quick: { type: 'boolean', default: false },
      conns: { type: 'string' },
      'churn-conns': { type: 'string' },
      'rest-seconds': { type: 'string' },
      'idle-conns': { type: 'string' },
      seconds: { type: 'string' },
      'udp-rates': { type: 'string' },
      'slow-seconds': { type: 'string' },
      'stalled-users': { type: 'string' },
      'http-conns': { type: 'string' },
      'http-seconds': { type: 'string' },
      pool: { type: 'string' },
      baseline: { type: 'string' },
      'limit-mb': { type: 'string' },
      logins: { type: 'string' },
      groups: { type: 'string' },
      concurrency: { type: 'string' },
      out: { type: 'string' },
      'cpu-prof': { type: 'string' },
      'no-json': { type: 'boolean', default: false },
      check: { type: 'boolean', default: false },
      'save-reference': { type: 'boolean', default: false },
      reference: { type: 'string' },
      tolerance: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const quick = values.quick!;
  const referenceFile = values.reference ?? join(benchDir, 'reference.json');
  const tolerance = Number(values.tolerance ?? 0.15);
  if (!(tolerance >= 0)) throw new Error(`--tolerance must be a number of at least 0 (got ${values.tolerance})`);
  // Read before anything runs: a missing reference should not cost a whole bench first.
  const reference = values.check ? readReference(referenceFile) : undefined;
  const figures = pickList(values.only, FIGURES, 'figure');
  // The baseline's paths come with --baseline (below): by default only this build's run.
  const paths = pickList(values.paths, [...PATH_NAMES, ...BASELINE_PATH_NAMES, ...OPT_IN_PATH_NAMES], 'path', PATH_NAMES);
  const orphan = paths.find((path) => BASELINE_PATH_NAMES.includes(path));
  if (orphan !== undefined && values.baseline === undefined) throw new Error(`path ${orphan} needs --baseline DIR (another build to compare with)`);
  if (values.baseline !== undefined) {
    // Each tunnel path selected is run from the baseline build too.
    const wanted = BASELINE_PATH_NAMES.filter((name) => paths.includes(name.replace('-base', '') as PathName) && !paths.includes(name));
    paths.push(...wanted);
  }
  const num = (value: string | undefined, normal: number, short: number): number => (value === undefined ? (quick ? short : normal) : Number(value));
  const settings = {
    runs: num(values.runs, 3, 1),
    conns: num(values.conns, 2000, 200),
    churnConns: num(values['churn-conns'], 4000, 600),
    restSeconds: num(values['rest-seconds'], 10, 2),
    idleConns: num(values['idle-conns'], 10_000, 1000),
    seconds: num(values.seconds, 3, 1),
    slowSeconds: num(values['slow-seconds'], 20, 5),
    stalledUsers: num(values['stalled-users'], 200, 50),
    redisRequests: quick ? 20_000 : 100_000,
    slowOfferedBytes: 1024 ** 3,
    slowRate: 4 * 1024 * 1024,
    udpRates:
      values['udp-rates']
        ?.split(',')
        .map((rate) => rate.trim())
        .filter(Boolean) ?? (quick ? ['10M', '100M', '500M'] : DEFAULT_UDP_RATES),
    limitBytes: Number(values['limit-mb'] ?? 8) * 1024 * 1024,
    httpConns: num(values['http-conns'], 32, 16),
    httpSeconds: num(values['http-seconds'], 5, 2),
    ...(values.pool === undefined ? {} : { pool: Number(values.pool) }),
  };
  const loginSettings = { logins: num(values.logins, 200, 30), groups: num(values.groups, 1000, 100), concurrency: num(values.concurrency, 50, 20) };
  const tools = [
    { bin: 'iperf3', pkg: 'iperf3', figures: ['throughput', 'udp', 'limited'] },
    { bin: 'redis-server', pkg: 'redis-server', figures: ['redis'] },
    { bin: 'redis-benchmark', pkg: 'redis-tools', figures: ['redis'] },
    { bin: 'etcd', pkg: 'etcd-server', figures: ['login'] },
  ] as const;
  // A figure whose program is missing is skipped with a line that says so; the others run.
  const skipped = new Set<Figure>(
    missingTools(tools.filter((tool) => tool.figures.some((figure) => figures.includes(figure)))).flatMap((tool) => tool.figures),
  );
  const has = (figure: Figure): boolean => figures.includes(figure) && !skipped.has(figure);
  if (!checkTools([{ bin: 'openssl', pkg: 'openssl', needed: paths.some((p) => p.endsWith('-tls')) }])) return 1;
  const measured = figures.filter(has);
  if (has('idle') && settings.idleConns > idleLimit()) {
    console.log(
      `note: idle conns reduced from ${settings.idleConns} to ${idleLimit()}: the open-files hard limit is ${hardLimit()} and a relay process holds two descriptors per conn`,
    );
    settings.idleConns = idleLimit();
  }

  const figuresByPath = new Map<PathName, Figures>();
  const add = (path: PathName, metric: string, value: number | undefined): void => {
    if (value === undefined) return;
    const figures = figuresByPath.get(path) ?? new Map<string, number[]>();
    figuresByPath.set(path, figures);
    figures.set(metric, [...(figures.get(metric) ?? []), value]);
  };
  const unavailable = new Set<PathName>();
  const udpSamples: UdpSample[] = [];
  const httpRuns = new Map<HttpPath, HttpFigures[]>();

  const cert = paths.some((p) => p.endsWith('-tls')) ? await makeCert() : undefined;
  const apps: TestApp[] = [];
  const stops: Array<() => Promise<void> | void> = [];
  try {
    const targets: Record<string, number> = {};
    if (has('throughput') || has('udp') || has('limited')) {
      const port = await freePort();
      const server = startDaemon('iperf3', ['-s', '-p', String(port), '-B', '127.0.0.1']);
      stops.push(() => stopDaemon(server));
      targets.iperf = port;
      // The same iperf3 server behind a second app of the tunnel, one with a bandwidth limit.
      if (has('limited')) targets.limited = port;
    }
    if (has('redis')) {
      const port = await freePort();
      const server = startDaemon('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxclients', '1000']);
      stops.push(() => stopDaemon(server));
      targets.redis = port;
    }
    if (has('setup') || has('churn')) {
      const echo = await startEchoApp();
      apps.push(echo);
      targets.echo = echo.port;
    }
    if (has('idle') || has('rest')) {
      const echo = await startEchoProcess();
      stops.push(echo.stop);
      targets.idle = echo.port;
    }
    if (has('slow') || has('stalled')) {
      const source = await startSourceApp(settings.slowOfferedBytes);
      apps.push(source);
      targets.source = source.port;
    }
    await waitForDaemons(targets);

    const pathOptions = {
      ...(cert ? { certDir: cert.dir } : {}),
      ...(settings.pool === undefined ? {} : { pool: settings.pool }),
      ...(values['cpu-prof'] === undefined ? {} : { cpuProfDir: values['cpu-prof'] }),
      ...(values.baseline === undefined ? {} : { baselineRoot: values.baseline }),
      limitBytes: settings.limitBytes,
    };
    for (let run = 1; run <= settings.runs && figures.some((figure) => figure !== 'http' && figure !== 'login'); run++) {
      for (const name of paths) {
        process.stdout.write(`run ${run}/${settings.runs} ${name}:`);
        for (const figure of measured) {
          if (unavailable.has(name)) break;
          if ((figure === 'idle' || figure === 'rest' || figure === 'slow' || figure === 'stalled') && name === 'direct') continue; // no process of ours to weigh
          if (figure === 'http') continue; // its own paths, below
          if (figure === 'login') continue; // its own setups (single, cluster), measured once below
          if (figure === 'udp') {
            if (!UDP_PATHS.includes(name)) continue; // the bare relays carry TCP only
            const path = await openUdpPath(name, targets.iperf!, pathOptions);
            try {
              for (const rate of settings.udpRates) {
                for (const direction of ['up', 'down'] as const) udpSamples.push(await iperfUdp(path, rate, direction, settings.seconds));
              }
              process.stdout.write(' udp');
            } finally {
              await path.close();
            }
            continue;
          }
          if (figure === 'limited' && !name.startsWith('tunnel')) continue; // only the tunnel has limits
          // Fresh processes per figure, so that no RSS figure inherits another one's heap.
          const path = await openPath(name, targets, { ...pathOptions, traceGc: figure === 'throughput' });
          if (path === undefined) {
            unavailable.add(name);
            break;
          }
          try {
            await measure(figure, path, settings, (metric, value) => add(name, metric, value));
            process.stdout.write(` ${figure}`);
          } finally {
            await path.close();
          }
        }
        process.stdout.write('\n');
      }
    }
    // HTTP requests: direct, through an app's own TCP port, and by name through the vhost,
    // all on one TLS tunnel (the default link) and one app process.
    for (let run = 1; has('http') && run <= settings.runs; run++) {
      process.stdout.write(`run ${run}/${settings.runs} http:`);
      const http = await openHttpPaths();
      try {
        // Warm every path first (JIT, the pool's work conns), so that the first measured is not the coldest.
        for (const path of HTTP_PATHS) await httpLoad(http.ports[path], settings.httpConns, 1);
        for (const path of HTTP_PATHS) {
          const figures = await httpLoad(http.ports[path], settings.httpConns, settings.httpSeconds);
          httpRuns.set(path, [...(httpRuns.get(path) ?? []), figures]);
          process.stdout.write(` ${path}`);
        }
      } finally {
        await http.close();
      }
      process.stdout.write('\n');
    }
  } finally {
    for (const app of apps) await app.close();
    for (const stop of stops) await stop();
    cert?.remove();
    killAll();
  }

  // Logins are not a path's figure: a single server against cluster nodes on a real etcd.
  const login = has('login') ? await (await import('./login.js')).loginBench(loginSettings) : undefined;

  const medians = Object.fromEntries(
    [...figuresByPath].map(([path, figures]) => [path, Object.fromEntries([...figures].map(([metric, values]) => [metric, median(values)]))]),
  );
  if (figuresByPath.size > 0) printTable(paths, figuresByPath, unavailable);
  if (has('udp'))
    printUdpTable(
      udpSamples,
      paths.filter((path) => UDP_PATHS.includes(path)),
      settings.udpRates,
    );
  const httpMedians: Partial<Record<HttpPath, HttpFigures>> = {};
  for (const [path, runs] of httpRuns) {
    const of = (key: keyof HttpFigures): number => median(runs.map((run) => run[key]));
    httpMedians[path] = { requestsPerSecond: of('requestsPerSecond'), p50Ms: of('p50Ms'), p99Ms: of('p99Ms'), errors: of('errors') };
  }
  if (has('http')) printHttpTable(httpMedians, settings.httpConns, settings.httpSeconds);
  const targets = judgeTargets(figuresByPath);
  printTargets(targets);
  const gauges = gaugeFigures(figuresByPath);
  let checkFailed = false;
  if (reference !== undefined) {
    const rows = compareWithReference(gauges, reference, tolerance);
    if (rows.length === 0)
      throw new Error(`bench --check: this run measured none of the gauges of ${referenceFile} (measure throughput and setup on the relay and tunnel paths)`);
    printCheck(rows, tolerance, referenceFile);
    checkFailed = rows.some((row) => !row.ok);
  }
  if (values['save-reference']) {
    writeReference(referenceFile, gauges, process.argv.slice(2));
    console.log(`reference written to ${referenceFile}`);
  }
  for (const figure of skipped) console.log(`${figure}: skipped, a program it needs is missing (see above)`);
  if (has('slow')) {
    console.log(
      `slow reader: the app offers ${settings.slowOfferedBytes / 2 ** 30} GiB; the user reads at ${settings.slowRate / 2 ** 20} MiB/s ` +
        `for ${settings.slowSeconds} s (bounded), so only the first part is delivered; RSS growth is peak minus start.`,
    );
  }
  if (has('idle')) console.log(`idle: ${settings.idleConns} conns open at once; bytes/conn = RSS growth / conns.`);
  if (!values['no-json']) {
    const out = values.out ?? join(resultsDir, 'latest.json');
    mkdirSync(dirname(out), { recursive: true });
    const raw = Object.fromEntries([...figuresByPath].map(([path, figures]) => [path, Object.fromEntries(figures)]));
    writeFileSync(
      out,
      JSON.stringify(
        {
          date: new Date().toISOString(),
          node: process.version,
          cpus: cpus().length,
          args: process.argv.slice(2),
          settings,
          unavailable: [...unavailable],
          skipped: [...skipped],
          medians,
          targets,
          raw,
          udp: udpSamples,
          http: { medians: httpMedians, raw: Object.fromEntries(httpRuns) },
          ...(login ? { login } : {}),
        },
        null,
        2,
      ),
    );
    console.log(`figures written to ${out}`);
  }
  return checkFailed ? 1 : 0;
}

/** req/s and latency per HTTP path, with the ratios to the direct path and to the TCP path. */
function printHttpTable(medians: Partial<Record<HttpPath, HttpFigures>>, conns: number, seconds: number): void {
  const { direct, tcp } = medians;
  console.log(`\nHTTP, autocannon, ${conns} keep-alive conns, ${seconds} s per path (medians):`);
  console.log('| path | req/s | p50 (ms) | p99 (ms) | errors | req/s ÷ direct | req/s ÷ tcp |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const path of HTTP_PATHS) {
    const row = medians[path];
    if (row === undefined) continue;
    const ratio = (base: HttpFigures | undefined): string => (base === undefined ? '' : `${(row.requestsPerSecond / base.requestsPerSecond).toFixed(2)}×`);
    console.log(
      `| ${path} | ${Math.round(row.requestsPerSecond).toLocaleString('en')} | ${row.p50Ms} | ${row.p99Ms} | ${row.errors} | ${ratio(direct)} | ${ratio(tcp)} |`,
    );
  }
}

interface Settings {
  conns: number;
  churnConns: number;
  restSeconds: number;
  idleConns: number;
  seconds: number;
  slowSeconds: number;
  stalledUsers: number;
  redisRequests: number;
  slowOfferedBytes: number;
  slowRate: number;
  limitBytes: number;
}

async function measure(figure: Figure, path: BenchPath, settings: Settings, add: (metric: string, value: number | undefined) => void): Promise<void> {
  switch (figure) {
    case 'throughput': {
      // Beside Gbit/s, what carrying the bytes cost: CPU-seconds per GB (both processes), the
      // full GCs each ran and the page faults they took (thousands per GB: freed memory the
      // kernel had to map again). On two shared cores these are far steadier than throughput.
      const costOf = async (streams: number, pids: Pids | undefined): Promise<Awaited<ReturnType<typeof iperf>>> => {
        const carriers = path.pids('iperf');
        const cpuBefore = carriers && cpuMs(carriers.server) + cpuMs(carriers.client);
        const faultsBefore = carriers && minorFaults(carriers.server) + minorFaults(carriers.client);
        const gcsBefore = path.fullGcs('iperf');
        const run = await iperf(path.ports.iperf!, streams, settings.seconds, pids);
        const label = streams === 1 ? '1 stream' : `${streams} streams`;
        if (carriers && cpuBefore !== undefined) {
          const cpuSeconds = (cpuMs(carriers.server) + cpuMs(carriers.client) - cpuBefore) / 1000;
          add(`iperf ${label} CPU s/GB`, cpuSeconds / (run.bytes / 1e9));
          const faults = minorFaults(carriers.server) + minorFaults(carriers.client) - faultsBefore!;
          add(`iperf ${label} page faults k/GB`, faults / 1000 / (run.bytes / 1e9));
        }
        const gcsAfter = path.fullGcs('iperf');
        if (gcsBefore && gcsAfter) add(`iperf ${label} full GCs/process`, Math.max(gcsAfter.server - gcsBefore.server, gcsAfter.client - gcsBefore.client));
        return run;
      };
      const one = await costOf(1, undefined);
      add('iperf 1 stream Gbit/s', one.bitsPerSecond / 1e9);
      const eight = await costOf(8, path.pids('iperf'));
      add('iperf 8 streams Gbit/s', eight.bitsPerSecond / 1e9);
      add('peak RSS 8 streams, server MB', eight.peakRss && eight.peakRss.server / 2 ** 20);
      add('peak RSS 8 streams, client MB', eight.peakRss && eight.peakRss.client / 2 ** 20);
      return;
    }
    case 'limited': {
      // What got through a limited app, as a fraction of its limit: each way, and 4 users sharing it.
      const of = async (args: string[], streams = 1): Promise<number> =>
        (await iperf(path.ports.limited!, streams, settings.seconds, undefined, args)).bitsPerSecond / 8 / settings.limitBytes;
      add('limited app in, ÷ limit', await of([]));
      add('limited app out (-R), ÷ limit', await of(['-R']));
      add('limited app, 4 users, ÷ limit', await of([], 4));
      return;
    }
    case 'setup': {
      const pids = path.pids('echo');
      const cpuBefore = pids && { server: cpuMs(pids.server), client: cpuMs(pids.client) };
      const setup = await connSetup(path.ports.echo!, settings.conns);
      add('setup conns/s', setup.connsPerSecond);
      add('setup p50 ms', setup.p50Ms);
      add('setup p99 ms', setup.p99Ms);
      if (pids && cpuBefore) {
        add('setup CPU µs/conn, server', ((cpuMs(pids.server) - cpuBefore.server) * 1000) / settings.conns);
        add('setup CPU µs/conn, client', ((cpuMs(pids.client) - cpuBefore.client) * 1000) / settings.conns);
      }
      // One user at a time with the processes otherwise quiet: the latency a user sees
      // when the previous one's teardown is not competing for the two cores.
      const paced = await connSetup(path.ports.echo!, Math.ceil(settings.conns / 4), 2);
      add('setup p50 ms, 2 ms apart', paced.p50Ms);
      return;
    }
    case 'churn': {
      for (const users of [50, 200]) {
        const churn = await connChurn(path.ports.echo!, users, settings.churnConns);
        add(`churn ${users} users conns/s`, churn.connsPerSecond);
        add(`churn ${users} users p99 ms`, churn.p99Ms);
      }
      return;
    }
    case 'redis': {
      const rps = await redisBench(path.ports.redis!, settings.redisRequests);
      add('redis PING req/s', rps.ping);
      add('redis SET req/s', rps.set);
      add('redis GET req/s', rps.get);
      return;
    }
    case 'rest': {
      // What each process holds after login, before any user: the floor under every RSS figure.
      const rest = await restingRss(settings.restSeconds, path.pids('idle')!);
      add('RSS at rest, server MB', rest.server / 2 ** 20);
      add('RSS at rest, client MB', rest.client / 2 ** 20);
      return;
    }
    case 'idle': {
      const idle = await idleConns(path.ports.idle!, settings.idleConns, path.pids('idle')!);
      add('idle conns', idle.conns);
      add('idle bytes/conn, server', idle.bytesPerConn.server);
      add('idle bytes/conn, client', idle.bytesPerConn.client);
      add('idle RSS, server MB', idle.rssAfter.server / 2 ** 20);
      add('idle RSS, client MB', idle.rssAfter.client / 2 ** 20);
      return;
    }
    case 'stalled': {
      const stalled = await stalledUsers(path.ports.source!, settings.stalledUsers, path.pids('source')!);
      add('stalled user KB, server', stalled.bytesPerUser.server / 1024);
      add('stalled user KB, client', stalled.bytesPerUser.client / 1024);
      return;
    }
    case 'slow': {
      const slow = await slowReader(path.ports.source!, settings.slowOfferedBytes, settings.slowRate, settings.slowSeconds, path.pids('source')!);
      add('slow reader read MB', slow.readBytes / 2 ** 20);
      add('slow reader RSS growth, server MB', slow.rssGrowth.server / 2 ** 20);
      add('slow reader RSS growth, client MB', slow.rssGrowth.client / 2 ** 20);
      return;
    }
  }
}

function pickList<T extends string>(value: string | undefined, all: readonly T[], what: string, byDefault: readonly T[] = all): T[] {
  if (value === undefined) return [...byDefault];
  const picked = value
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
  for (const item of picked) if (!(all as readonly string[]).includes(item)) throw new Error(`unknown ${what} "${item}" (one of ${all.join(', ')})`);
  return picked as T[];
}

function hardLimit(): number {
  const out = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim();
  return out === 'unlimited' ? 1_000_000 : Number(out);
}

/** A relay hop holds a user-side and an app-side descriptor per conn, plus a few of its own. */
function idleLimit(): number {
  const soft = Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim()) || hardLimit();
  return Math.floor((Math.min(soft, hardLimit()) - 200) / 2);
}

async function freePort(): Promise<number> {
  const { unusedPort } = await import('../test/helpers/apps.js');
  return unusedPort();
}

/** iperf3 and redis-server take a moment to listen: poll their ports, bounded. */
async function waitForDaemons(targets: Record<string, number>): Promise<void> {
  const { connect } = await import('node:net');
  for (const name of ['iperf', 'redis']) {
    const port = targets[name];
    if (port === undefined) continue;
    const deadline = Date.now() + 10_000;
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const socket = connect({ host: '127.0.0.1', port });
        socket.once('connect', () => (socket.destroy(), resolve(true)));
        socket.once('error', () => resolve(false));
      });
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`${name} did not start listening on ${port} within 10s`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    killAll();
    console.error(`bench: ${(error as Error).stack ?? error}`);
    process.exit(1);
  },
);
