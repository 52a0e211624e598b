export * from './common-server.js';
export * from './app-group.js';
export * from './app-server.js';
export * from './events.js';
export * from './certificate.js';
export { portRefusal } from './policy.js';
export { BIND_RETRY_DEFAULTS, type BindRetryPolicy } from './bind-retry.js';
export { UdpAppServer, UDP_DROP_REASONS, type UdpCounters, type UdpDropReason } from './udp-app-server.js';
