export * from './mermaid.js';
export * from './server-trace.js';
export * from './client-trace.js';
