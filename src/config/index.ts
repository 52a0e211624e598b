export * from './errors.js';
export * from './secret.js';
export * from './values.js';
export * from './group-file.js';
export * from './server-config.js';
export { YamlFile } from './yaml-file.js';
export * from './admin-config.js';
export * from './watch.js';
