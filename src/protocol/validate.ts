import { ProtocolError } from './errors.js';
import type { AppBinding, AppDeclaration, Message } from './messages.js';

/**
 * Narrows parsed JSON to a Message. Anything a peer sends is `unknown` until it passes here;
 * extra fields are ignored, missing or mistyped ones are a BAD_MESSAGE naming the field.
 */
export function validateMessage(value: unknown): Message {
  const obj = record(value, 'message');
  const type = obj.type;
  switch (type) {
    case 'Hello':
      return {
        type,
        version: int(obj, 'version'),
        group: str(obj, 'group', 128),
        clientId: str(obj, 'clientId', 128),
      };
    case 'Challenge':
      return { type, nonce: str(obj, 'nonce', 256) };
    case 'Login':
      return { type, proof: str(obj, 'proof', 256), apps: list(obj, 'apps', appDeclaration) };
    case 'LoginResp':
      return loginResp(obj);
    case 'Ping':
    case 'Pong':
      return { type, seq: int(obj, 'seq') };
    case 'ReqWorkConn':
      return { type, app: str(obj, 'app', 128), pairingId: str(obj, 'pairingId', 128) };
    case 'NewWorkConn':
      return {
        type,
        sessionId: str(obj, 'sessionId', 128),
        pairingId: str(obj, 'pairingId', 128),
        proof: str(obj, 'proof', 256),
      };
    case 'ReqPooledWorkConns':
      return { type, pairingIds: list(obj, 'pairingIds', (v, f) => stringValue(v, f, 128)) };
    case 'StartWorkConn':
      return { type, app: str(obj, 'app', 128), pairingId: str(obj, 'pairingId', 128) };
    case 'WorkConnEnd':
      return { type, pairingId: str(obj, 'pairingId', 128), bytes: int(obj, 'bytes') };
    case 'WorkConnIdle':
      return { type, pairingId: str(obj, 'pairingId', 128) };
    case 'AppsChanged':
      return { type, opened: list(obj, 'opened', appBinding), closed: list(obj, 'closed', (v, f) => stringValue(v, f, 128)) };
    case 'WorkConnFailed':
      return { type, pairingId: str(obj, 'pairingId', 128), reason: str(obj, 'reason', 1024) };
    case 'Goodbye':
      return {
        type,
        code: oneOf(obj, 'code', [
          'TAKEN_OVER',
          'SHUTDOWN',
          'HEARTBEAT_TIMEOUT',
          'PROTOCOL_ERROR',
          'KICKED',
          'DEREGISTERED',
          'SLOW_PEER',
          'SECRET_CHANGED',
        ] as const),
        reason: str(obj, 'reason', 1024),
      };
    default:
      throw bad(`unknown message type ${JSON.stringify(type)?.slice(0, 40) ?? 'undefined'}`);
  }
}

function loginResp(obj: Record<string, unknown>): Message {
  if (obj.error !== undefined) {
    const error = record(obj.error, 'LoginResp.error');
    return {
      type: 'LoginResp',
      error: {
        code: oneOf(error, 'code', [
          'UNKNOWN_GROUP',
          'BAD_SECRET',
          'GROUP_IN_USE',
          'VERSION_MISMATCH',
          'RATE_LIMITED',
          'POLICY',
        ] as const),
        reason: str(error, 'reason', 1024),
      },
    };
  }
  return {
    type: 'LoginResp',
    sessionId: str(obj, 'sessionId', 128),
    heartbeatIntervalMs: int(obj, 'heartbeatIntervalMs'),
    heartbeatTimeoutMs: int(obj, 'heartbeatTimeoutMs'),
    apps: list(obj, 'apps', appBinding),
    warnings: obj.warnings === undefined ? [] : list(obj, 'warnings', (v, f) => stringValue(v, f, 1024)),
  };
}

function appDeclaration(value: unknown, field: string): AppDeclaration {
  const obj = record(value, field);
  return { name: str(obj, 'name', 128), remotePort: port(obj, 'remotePort') };
}

function appBinding(value: unknown, field: string): AppBinding {
  const obj = record(value, field);
  const binding: AppBinding = {
    name: str(obj, 'name', 128),
    remotePort: port(obj, 'remotePort'),
    state: oneOf(obj, 'state', ['listening', 'failed'] as const),
  };
  if (obj.error !== undefined) binding.error = str(obj, 'error', 1024);
  if (obj.domains !== undefined) binding.domains = list(obj, 'domains', (v, f) => stringValue(v, f, 253));
  return binding;
}

const MAX_LIST = 1024;

function bad(message: string): ProtocolError {
  return new ProtocolError('BAD_MESSAGE', message);
}

function record(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw bad(`${field} must be an object`);
  }
  return value as Record<string, unknown>;
}

function stringValue(value: unknown, field: string, maxLength: number): string {
  if (typeof value !== 'string') throw bad(`${field} must be a string`);
  if (value.length > maxLength) throw bad(`${field} is longer than ${maxLength} characters`);
  return value;
}

function str(obj: Record<string, unknown>, key: string, maxLength: number): string {
  return stringValue(obj[key], key, maxLength);
}

function int(obj: Record<string, unknown>, key: string): number {
  const value = obj[key];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw bad(`${key} must be a non-negative integer`);
  }
  return value;
}

function port(obj: Record<string, unknown>, key: string): number {
  const value = int(obj, key);
  if (value > 65535) throw bad(`${key} must be a port number (0-65535)`);
  return value;
}

function oneOf<T extends string>(obj: Record<string, unknown>, key: string, allowed: readonly T[]): T {
  const value = obj[key];
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw bad(`${key} must be one of ${allowed.join(', ')}`);
  }
  return value as T;
}

function list<T>(obj: Record<string, unknown>, key: string, item: (v: unknown, field: string) => T): T[] {
  const value = obj[key];
  if (!Array.isArray(value)) throw bad(`${key} must be an array`);
  if (value.length > MAX_LIST) throw bad(`${key} has more than ${MAX_LIST} entries`);
  return value.map((v, i) => item(v, `${key}[${i}]`));
}
