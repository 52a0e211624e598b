#!/usr/bin/env node
// The V8 flag first, the command's modules after it: see startup-heap.ts.
import './startup-heap.js';

await import('./commonserver-main.js');
