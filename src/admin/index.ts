export * from './admin-server.js';
export * from './event-stream.js';
export * from './metrics.js';
export * from './request-guard.js';
export * from './state.js';
