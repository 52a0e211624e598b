import { z } from 'zod';
import { section } from './sections.js';
import { domainName } from './vhost-app.js';
import { duration, hostPort, problem, type HostPort } from './values.js';

/** The server's virtual-host ports and the domain policy of its groups (`vhost:` in commonserver.yaml). */
export interface VhostConfig {
  /** Plain HTTP, routed by the Host header of each request. */
  readonly http?: HostPort;
  /** TLS passed through untouched, routed by the ClientHello's server name. */
  readonly https?: HostPort;
  /** `subdomain: x` in a group file claims x.<subdomainHost>. */
  readonly subdomainHost?: string;
  /**
   * Which names each group may claim in `domains:`: group name (or "*" for every group) →
   * patterns (`app.example.com`, `*.example.com`). Unset: any name no other group holds.
   */
  readonly allowDomains?: Readonly<Record<string, readonly string[]>>;
  /** A request head must be complete within this (from the conn's start or the end of the previous response). */
  readonly headersTimeoutMs: number;
}

export const VHOST_DEFAULTS = { headersTimeoutMs: 10_000 } as const;

/** The `vhost:` section of commonserver.yaml. */
export function vhostSectionSchema() {
  const patterns = z.array(domainName, problem('expected a list of host names or *.patterns'));
  return section({
    http: hostPort({ allowPortZero: true })
      .optional()
      .meta({ description: 'The HTTP vhost port: apps of type http, routed by Host', examples: ['0.0.0.0:80'] }),
    https: hostPort({ allowPortZero: true })
      .optional()
      .meta({ description: 'The HTTPS vhost port: apps of type https, routed by TLS server name (not decrypted)', examples: ['0.0.0.0:443'] }),
    subdomainHost: domainName.optional().meta({ description: 'subdomain: x in a group file claims x.<subdomainHost>' }),
    allowDomains: z
      .record(z.string(), patterns, problem('expected a mapping of group name (or "*") to host names'))
      .optional()
      .meta({ description: 'Which names each group (or "*", every group) may claim in domains:; unset: any free name' }),
    headersTimeout: duration
      .default(VHOST_DEFAULTS.headersTimeoutMs)
      .meta({ description: 'A request head must be complete within this (slowloris); idle keep-alive conns close after it' }),
  })
    .meta({ description: 'HTTP and HTTPS virtual hosts: web apps of every group on shared ports, by name' })
    .transform(({ http, https, subdomainHost, allowDomains, headersTimeout }, ctx): VhostConfig => {
      if (http === undefined && https === undefined) ctx.addIssue({ code: 'custom', path: [], message: 'expected http: HOST:PORT and/or https: HOST:PORT' });
      if (subdomainHost?.startsWith('*') === true)
        ctx.addIssue({ code: 'custom', path: ['subdomainHost'], message: 'expected a plain host name (subdomains are made below it)' });
      if (headersTimeout < 100) ctx.addIssue({ code: 'custom', path: ['headersTimeout'], message: 'must be at least 100ms' });
      return Object.freeze({
        ...(http ? { http } : {}),
        ...(https ? { https } : {}),
        ...(subdomainHost ? { subdomainHost } : {}),
        ...(allowDomains ? { allowDomains: Object.freeze(allowDomains) } : {}),
        headersTimeoutMs: headersTimeout,
      });
    });
}
