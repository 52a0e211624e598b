import { z } from 'zod';
import { problem } from './values.js';

/**
 * How an app is reached: `tcp` (the default) and `udp` on a public port of their own (a port
 * number may serve one TCP and one UDP app), `http` and `https` on the server's shared vhost
 * ports by name.
 */
export const APP_TYPES = ['tcp', 'udp', 'http', 'https'] as const;
export type AppType = (typeof APP_TYPES)[number];

/** An app's `type` as written in a group file. */
export const appType = z.enum(APP_TYPES, problem('expected tcp, udp, http or https')).default('tcp').meta({
  description:
    "tcp (the default): a public port of its own; udp: datagrams, one session and one local socket per user address; http / https: the server's vhost ports, by name",
});
