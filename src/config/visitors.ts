import { z } from 'zod';
import { GROUP_NAME_RULE, NAME_PATTERN } from './group-name.js';
import type { Secret } from './secret.js';
import { secretValue } from './secret-source.js';
import { section } from './sections.js';
import { hostPort, problem, type HostPort } from './values.js';

const GROUP_EXPECTED = `expected a group name of ${GROUP_NAME_RULE}`;
const groupName = z.string(GROUP_EXPECTED).regex(NAME_PATTERN, GROUP_EXPECTED);
const NAME_EXPECTED = 'expected a name of letters, digits, "-", "_" or "."';
const name = z.string(NAME_EXPECTED).regex(NAME_PATTERN, NAME_EXPECTED);

/**
 * Who may reach an app without a public port (frp's stcp / sudp), on the owner's side: part of
 * each app of a group file, read by the server's registry.
 */
export function appVisibilityShape(env: NodeJS.ProcessEnv) {
  return {
    visibility: z
      .enum(['public', 'private'], problem('expected public or private'))
      .optional()
      .meta({ description: "private: no public port at all; reached only by other groups' visitors named in allowVisitors (tcp and udp apps)" }),
    allowVisitors: z
      .array(groupName, problem('expected a list of group names'))
      .max(1024)
      .optional()
      .meta({ description: 'A private app: the groups whose visitors may reach it; any other visitor is refused' }),
    visitorSecret: secretValue(env)
      .optional()
      .meta({ description: "A private app: a secret each visitor must also know (its visitor's secret:); ${VAR} reads it from the environment" }),
  };
}

/** A private app's visitor rules, as the code reads them; absent for a public app. */
export interface AppVisibility {
  readonly visibility?: 'private';
  readonly allowVisitors?: readonly string[];
  readonly visitorSecret?: Secret;
}

type VisibilityFields = {
  visibility?: 'public' | 'private' | undefined;
  allowVisitors?: string[] | undefined;
  visitorSecret?: { secret: Secret } | undefined;
  type: string;
  remotePort?: number | undefined;
  pool?: string | undefined;
};

/**
 * Checks a private app's fields against each other (issues at the field to change) and returns
 * what the code reads. A private app opens no port, so it has no remotePort and no pool.
 */
export function appVisibility({ visibility, allowVisitors, visitorSecret, type, remotePort, pool }: VisibilityFields, ctx: z.RefinementCtx): AppVisibility {
  if (visibility !== 'private') {
    for (const [field, value] of [
      ['allowVisitors', allowVisitors],
      ['visitorSecret', visitorSecret],
    ] as const) {
      if (value !== undefined) ctx.addIssue({ code: 'custom', path: [field], message: `${field} applies to private apps: add visibility: private` });
    }
    return {};
  }
  if (type !== 'tcp' && type !== 'udp')
    ctx.addIssue({ code: 'custom', path: ['visibility'], message: `only tcp and udp apps can be private (this one is ${type}, reached by name)` });
  if (remotePort !== undefined) ctx.addIssue({ code: 'custom', path: ['remotePort'], message: 'a private app opens no public port: remove remotePort' });
  if (pool !== undefined) ctx.addIssue({ code: 'custom', path: ['pool'], message: 'a private app opens no public port, so it joins no pool' });
  return {
    visibility: 'private',
    allowVisitors: Object.freeze([...new Set(allowVisitors ?? [])]),
    ...(visitorSecret === undefined ? {} : { visitorSecret: visitorSecret.secret }),
  };
}

/** One visitor of a host file: a local port whose users reach another group's private app. */
function visitorSchema(env: NodeJS.ProcessEnv) {
  return section({
    name,
    group: groupName.meta({ description: 'The group that owns the app' }),
    app: name.meta({ description: "The private app, by its name in that group's file" }),
    bind: hostPort().meta({ description: 'Where this groupclient listens for the users of the visitor, such as 127.0.0.1:6379' }),
    type: z.enum(['tcp', 'udp'], problem('expected tcp or udp')).default('tcp').meta({ description: "tcp (the default) or udp: must match the app's type" }),
    secret: secretValue(env).optional().meta({ description: "The app's visitorSecret, when it has one" }),
  }).transform(({ secret, ...visitor }) => Object.freeze({ ...visitor, ...(secret === undefined ? {} : { secret: secret.secret }) }));
}

export interface VisitorSpec {
  readonly name: string;
  readonly group: string;
  readonly app: string;
  readonly bind: HostPort;
  readonly type: 'tcp' | 'udp';
  readonly secret?: Secret;
}

/** `visitors:` of a host file (client side), names and bind addresses distinct. */
export function visitorsSchema(env: NodeJS.ProcessEnv) {
  return z
    .array(visitorSchema(env), 'expected a list of visitors ({ name, group, app, bind })')
    .max(256)
    .superRefine((visitors, ctx) => {
      const names = new Set<string>();
      const binds = new Set<string>();
      visitors.forEach((visitor, i) => {
        if (names.has(visitor.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate visitor name "${visitor.name}"` });
        names.add(visitor.name);
        const bind = `${visitor.type}:${visitor.bind.host}:${visitor.bind.port}`;
        if (binds.has(bind))
          ctx.addIssue({
            code: 'custom',
            path: [i, 'bind'],
            message: `another visitor already binds ${visitor.type} ${visitor.bind.host}:${visitor.bind.port}`,
          });
        binds.add(bind);
      });
    })
    .meta({
      description: "Client side: local ports whose users reach other groups' private apps through the server",
      examples: [[{ name: 'redis', group: 'office-b', app: 'redis', bind: '127.0.0.1:6379' }]],
    });
}
