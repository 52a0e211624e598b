export * from './group-client.js';
export * from './client-session.js';
export * from './errors.js';
export * from './events.js';
export * from './tls.js';
export * from './verify.js';
export * from './group-file-reload.js';
export * from './endpoints.js';
