import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from './errors.js';
import { parseGroupFile, type GroupSpec } from './group-file.js';
import { portKey, portLabel } from './udp-app.js';
import { YamlFile } from './yaml-file.js';

export interface GroupDirectory {
  groups: GroupSpec[];
  /** Files that could not be registered; each is reported and skipped, the rest still load. */
  errors: ConfigError[];
}

interface Loaded {
  spec: GroupSpec;
  yaml: YamlFile;
}

/**
 * Loads every `*.yaml` / `*.yml` in the registry directory. One bad file never stops the
 * others: it is reported with its reason and skipped.
 *
 * A public port claimed by two files goes to the group that holds it in `registered` (the
 * server's readyGroup) when that group still claims it, else to the first file in name order;
 * the other file is refused. Without the first rule, a newcomer whose name sorts first would
 * take the port in the registry (its app then failing to bind) and the holder's every later
 * edit would be refused as a conflict: the holder's file would be frozen.
 */
export function loadGroupDirectory(dir: string, env: NodeJS.ProcessEnv = process.env, registered: ReadonlyMap<string, GroupSpec> = new Map()): GroupDirectory {
  let entries: string[];
  try {
    entries = readdirSync(dir).filter((entry) => /\.ya?ml$/.test(entry)).sort();
  } catch (error) {
    throw new ConfigError('CONFIG_READ', `${dir}: cannot read the groups directory: ${(error as Error).message}`, dir);
  }
  const loaded: Loaded[] = [];
  const errors: ConfigError[] = [];
  for (const entry of entries) {
    const file = join(dir, entry);
    try {
      const yaml = YamlFile.read(file);
      const spec = parseGroupFile(yaml, env);
      if (loaded.some((other) => other.spec.name === spec.name)) throw yaml.error(['name'], `group "${spec.name}" is already registered`);
      loaded.push({ spec, yaml });
    } catch (error) {
      // Whatever one file does, the others still load.
      errors.push(error instanceof ConfigError ? error : new ConfigError('CONFIG_INVALID', `${file}: ${(error as Error).message}`, file));
    }
  }
  const refused = refuseClaimedPorts(loaded, registered, entries);
  errors.push(...refused.errors);
  errors.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  return { groups: loaded.filter((entry) => !refused.names.has(entry.spec.name)).map((entry) => entry.spec), errors };
}

/**
 * Which loaded files lose a public port to another group. A refused file keeps its group's
 * last good version registered, so that version's ports stay reserved too: refusing one file
 * can make another lose, hence the loop until nothing changes.
 */
function refuseClaimedPorts(loaded: readonly Loaded[], registered: ReadonlyMap<string, GroupSpec>, entries: readonly string[]): { names: Set<string>; errors: ConfigError[] } {
  const names = new Set<string>();
  const errors: ConfigError[] = [];
  const stems = new Set(entries.map((entry) => entry.replace(/\.ya?ml$/, '')));
  for (;;) {
    // What each group will claim after this sync: its new file, or its last good version
    // when its file was refused or is invalid (a deleted file frees its ports).
    const claims = new Map<string, GroupSpec>();
    for (const [name, spec] of registered) if (stems.has(name)) claims.set(name, spec);
    for (const { spec } of loaded) if (!names.has(spec.name)) claims.set(spec.name, spec);
    // Keyed by port and protocol ("53/udp"): a TCP app and a UDP app may share a port number.
    const owners = new Map<string, string>();
    // Holders first: a port stays with the group that has it, as long as that group claims it.
    for (const [name, spec] of registered) {
      const now = claims.get(name);
      for (const app of spec.apps) if (app.remotePort !== 0 && now?.apps.some((mine) => portKey(mine) === portKey(app))) owners.set(portKey(app), ownerOf(now, portKey(app)));
    }
    const loser = loaded.find(({ spec }) => {
      if (names.has(spec.name)) return false;
      return spec.apps.some((app) => {
        const owner = owners.get(portKey(app));
        if (app.remotePort === 0) return false;
        if (owner === undefined || owner.startsWith(`${spec.name}/`)) {
          owners.set(portKey(app), `${spec.name}/${app.name}`);
          return false;
        }
        return true;
      });
    });
    if (loser === undefined) return { names, errors };
    names.add(loser.spec.name);
    const index = loser.spec.apps.findIndex((app) => app.remotePort !== 0 && owners.has(portKey(app)) && !owners.get(portKey(app))!.startsWith(`${loser.spec.name}/`));
    const app = loser.spec.apps[index]!;
    errors.push(loser.yaml.error(['apps', index, 'remotePort'], `port ${portLabel(app)} is already claimed by ${owners.get(portKey(app))}`));
  }
}

function ownerOf(spec: GroupSpec, key: string): string {
  return `${spec.name}/${spec.apps.find((app) => portKey(app) === key)!.name}`;
}
