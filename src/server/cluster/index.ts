export * from './cluster-node.js';
export * from './import.js';
export * from './keys.js';
