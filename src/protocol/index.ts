export * from './messages.js';
export * from './errors.js';
export * from './codec.js';
export * from './auth.js';
export * from './datagram-codec.js';
export * from './mux-codec.js';
