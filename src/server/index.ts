export * from './common-server.js';
export * from './app-group.js';
export * from './app-server.js';
export * from './events.js';
export * from './tls.js';
export { portRefusal } from './policy.js';
export { BIND_RETRY_DEFAULTS, type BindRetryPolicy } from './bind-retry.js';
export * from './verify.js';
export * from './init.js';
