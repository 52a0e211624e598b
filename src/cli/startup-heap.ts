import { setFlagsFromString } from 'node:v8';

/**
 * Keeps V8's young generation at its smallest while the process starts.
 *
 * Loading the modules and the config keeps most of what it allocates, and V8 answers a high
 * survival rate by doubling the young generation, up to 16 MB, whose pages then stay resident:
 * a process at rest held 8 to 12 MB more, depending on the scavenges' timing (the login and
 * the pool's TLS handshakes count: growth came back when it was allowed again at login). With
 * a growth factor of 1 until the first user it stays at 1 MB; {@link endStartup}
 * gives V8 back its default growth (2) then, because bulk traffic through a 1 MB young
 * generation lost up to half its throughput in the bench.
 *
 * Each CLI's entry imports this module alone, then loads the rest with a dynamic import: the
 * modules of a static import graph are all loaded and compiled before any of them runs, and
 * that loading is most of what grew the young generation. Nothing here imports a package.
 */
setFlagsFromString('--semi-space-growth-factor=1');

/** The first user has come: the young generation may grow again, as V8 sizes it for traffic. */
export function endStartup(): void {
  setFlagsFromString('--semi-space-growth-factor=2');
}
