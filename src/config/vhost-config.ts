import { parseDomain } from './vhost-app.js';
import { parseDuration, parseHostPort, type HostPort } from './values.js';
import type { YamlFile } from './yaml-file.js';

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

export function parseVhostSection(yaml: YamlFile, value: unknown): VhostConfig {
  const section = yaml.mapAt(['vhost'], value);
  yaml.onlyKeys(['vhost'], section, ['http', 'https', 'subdomainHost', 'allowDomains', 'headersTimeout']);
  const port = (key: 'http' | 'https'): HostPort | undefined =>
    section[key] === undefined ? undefined : yaml.expect(['vhost', key], parseHostPort(section[key], { allowPortZero: true }));
  const http = port('http');
  const https = port('https');
  if (http === undefined && https === undefined) throw yaml.error(['vhost'], 'expected http: HOST:PORT and/or https: HOST:PORT');
  let subdomainHost: string | undefined;
  if (section.subdomainHost !== undefined) {
    subdomainHost = yaml.expect(['vhost', 'subdomainHost'], parseDomain(section.subdomainHost));
    if (subdomainHost.startsWith('*')) throw yaml.error(['vhost', 'subdomainHost'], 'expected a plain host name (subdomains are made below it)');
  }
  let allowDomains: Record<string, string[]> | undefined;
  if (section.allowDomains !== undefined) {
    const map = yaml.mapAt(['vhost', 'allowDomains'], section.allowDomains);
    allowDomains = {};
    for (const [group, patterns] of Object.entries(map)) {
      if (!Array.isArray(patterns)) throw yaml.error(['vhost', 'allowDomains', group], 'expected a list of host names or *.patterns');
      allowDomains[group] = patterns.map((pattern: unknown, i: number) => yaml.expect(['vhost', 'allowDomains', group, i], parseDomain(pattern)));
    }
  }
  const headersTimeoutMs = section.headersTimeout === undefined ? VHOST_DEFAULTS.headersTimeoutMs : yaml.expect(['vhost', 'headersTimeout'], parseDuration(section.headersTimeout));
  if (headersTimeoutMs < 100) throw yaml.error(['vhost', 'headersTimeout'], 'must be at least 100ms');
  return Object.freeze({
    ...(http ? { http } : {}),
    ...(https ? { https } : {}),
    ...(subdomainHost ? { subdomainHost } : {}),
    ...(allowDomains ? { allowDomains: Object.freeze(allowDomains) } : {}),
    headersTimeoutMs,
  });
}
