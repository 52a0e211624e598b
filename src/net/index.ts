export * from './control-channel.js';
export * from './frame-reader.js';
export * from './heartbeat.js';
export * from './join-conns.js';
export * from './fingerprint.js';
export * from './transport.js';
export * from './reset.js';
export * from './work-conn-state.js';
