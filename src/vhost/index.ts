export * from './router.js';
export * from './virtual-conn.js';
export * from './vhost-server.js';
export * from './client-hello.js';
export * from './body-framer.js';
export * from './request-path.js';
