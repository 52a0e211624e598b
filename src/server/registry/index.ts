export * from './registry.js';
export * from './directory-registry.js';
export * from './hot-reload.js';
export * from './atomic-write.js';
