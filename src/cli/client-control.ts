import { askControlSocket, defaultControlSocketPath, NoControlSocketError, type ClientStatusReport, type ControlCommand } from '../client/index.js';
import { loadGroupFile } from '../config/index.js';
import { currentLogger, parseCommand, print } from './command-line.js';
import { CONTROL_EXIT } from './exit-codes.js';

/** `status` and `reload`'s exit codes. */

export const CONTROL_SOCKET_USAGE = `  --control-socket PATH  the unix socket (mode 600) that groupclient status and reload
                     talk to (default: $XDG_RUNTIME_DIR/groupclient-NAME.sock, else
                     groupclient-UID-NAME.sock in the temporary directory)`;

const USAGE = {
  status: `usage: groupclient status --group NAME [--json] [--control-socket PATH]
       groupclient status --config FILE [--json]

  Asks the groupclient of the group running on this host: its state, server, session age,
  and each app with its local target, public side, health and live conns (--json: as JSON).

${CONTROL_SOCKET_USAGE}

  exit 0: answered; 2: bad usage; 3: no groupclient of that group runs here`,
  reload: `usage: groupclient reload --group NAME [--control-socket PATH]
       groupclient reload --config FILE

  Asks the running groupclient to reload its group file (as SIGHUP does) and prints what
  changed, or why the file was not taken (the previous version stays).

${CONTROL_SOCKET_USAGE}

  exit 0: reloaded; 1: the file was not taken; 2: bad usage; 3: no groupclient of that group runs here`,
} as const;

const CONTROL_OPTIONS = {
  group: { type: 'string' },
  groups: { type: 'string' },
  config: { type: 'string' },
  'control-socket': { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

/** The control socket the options name: `--control-socket`, else the group's default. */
function socketPathOf(values: { group?: string; config?: string; 'control-socket'?: string }): string | undefined {
  if (values['control-socket'] !== undefined) return values['control-socket'];
  // A host's file may have any name: the name inside is the group's, as the running client took it.
  const group = values.group ?? (values.config !== undefined ? loadGroupFile(values.config, process.env, { anyFileName: true }).name : undefined);
  return group === undefined ? undefined : defaultControlSocketPath(group);
}

/** `groupclient status` and `groupclient reload`: one command to the running client's control socket. */
export async function controlCommand(command: ControlCommand, argv: string[]): Promise<number> {
  const name = `groupclient ${command}`;
  const parsed = parseCommand(name, argv, CONTROL_OPTIONS, USAGE[command]);
  if (parsed.exit !== undefined) return parsed.exit;
  const { values } = parsed;
  const path = socketPathOf(values);
  if (path === undefined) {
    currentLogger().fatal('usage', `${name}: name a group with --group NAME (or --config FILE, or --control-socket PATH)\n\n${USAGE[command]}`);
    return CONTROL_EXIT.usage;
  }
  let answer;
  try {
    answer = await askControlSocket(path, command);
  } catch (error) {
    const which = values.group ?? values.config ?? path;
    if (error instanceof NoControlSocketError)
      currentLogger().fatal('not-running', `${name}: no groupclient of ${which} is running here: ${error.message}`, { path });
    else currentLogger().fatal('failed', `${name}: ${(error as Error).message}`, { path });
    return CONTROL_EXIT.notRunning;
  }
  if (!answer.ok) {
    currentLogger().fatal('refused', `${name}: ${answer.error}`);
    return command === 'reload' ? CONTROL_EXIT.reloadFailed : CONTROL_EXIT.usage;
  }
  if (values.json) print(JSON.stringify(answer.result, null, 2));
  else print(command === 'status' ? statusText(answer.result as ClientStatusReport) : reloadText(answer.result as { apps: string[]; changes: string[] }));
  return CONTROL_EXIT.ok;
}

function reloadText({ apps, changes }: { apps: string[]; changes: string[] }): string {
  return [`group file reloaded: ${apps.join(', ')}`, ...(changes.length ? changes.map((change) => `  ${change}`) : ['  no change'])].join('\n');
}

/** The status as a compact table: one line for the session, one per app. */
export function statusText(report: ClientStatusReport): string {
  const session =
    report.state === 'active'
      ? `active on ${report.server} for ${age(report.sessionAgeMs ?? 0)}`
      : `${report.state}${report.server !== undefined ? ` (${report.state === 'connecting' ? 'to' : 'last on'} ${report.server})` : ''}`;
  const rows = [
    ['APP', 'TYPE', 'TARGET', 'PUBLIC', 'HEALTH', 'LIVE'],
    ...report.apps.map((app) => [app.name, app.type, app.target, app.public, app.health, String(app.liveConns)]),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  const table = rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  '));
  return [`group ${report.group} ${session}`, ...table].join('\n');
}

/** A session's age as people say it: 42s, 5m 3s, 2h 10m, 3d 4h. */
function age(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}
