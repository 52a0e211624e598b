export * from './admin-server.js';
export * from './atomic-write.js';
export * from './event-stream.js';
export * from './hot-reload.js';
export * from './metrics.js';
export * from './registry.js';
export * from './request-guard.js';
export * from './state.js';
