import type { AppBinding, GoodbyeCode, LoginRejectCode } from '../protocol/index.js';

/** What happens on a groupclient, in the vocabulary of the sequence diagram. */
export type ClientEvent =
  | { type: 'connecting'; server: string; attempt: number }
  | { type: 'login-accepted'; server: string; apps: AppBinding[]; warnings: string[] }
  | { type: 'login-rejected'; code: LoginRejectCode; reason: string; willRetry: boolean }
  | { type: 'connect-failed'; server: string; attempt: number; reason: string; retryInMs: number }
  | { type: 'session-lost'; code?: GoodbyeCode; reason: string }
  /** The server answered a Ping. */
  | { type: 'heartbeat'; seq: number }
  | { type: 'heartbeat-timeout'; silentMs: number }
  | { type: 'work-conn-requested'; app: string; pairingId: string }
  | { type: 'local-dial-failed'; app: string; target: string; reason: string }
  | { type: 'work-conn-opened'; app: string; pairingId: string }
  | { type: 'conn-closed'; app: string; bytesIn: number; bytesOut: number; durationMs: number; error?: string }
  | { type: 'spec-reloaded'; apps: string[] }
  | { type: 'stopped'; reason: string };

export type ClientEventType = ClientEvent['type'];
export type EmitClientEvent = (event: ClientEvent) => void;
