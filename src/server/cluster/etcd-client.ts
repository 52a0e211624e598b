import { Etcd3, type IOptions } from 'etcd3';
import type { ClusterConfig } from '../../config/index.js';

/** Every unary call gets a deadline: a path that drops packets must not hang a login or a write. */
export const ETCD_CALL_DEADLINE_MS = 2_000;

/** An etcd client for this node's `cluster:` section (TLS and auth when configured). */
export function connectEtcd(config: ClusterConfig): Etcd3 {
  const options: IOptions = {
    hosts: [...config.etcd],
    dialTimeout: ETCD_CALL_DEADLINE_MS,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + ETCD_CALL_DEADLINE_MS }),
  };
  if (config.tls?.ca !== undefined) {
    options.credentials = {
      rootCertificate: config.tls.ca,
      ...(config.tls.cert && config.tls.key ? { certChain: config.tls.cert, privateKey: config.tls.key } : {}),
    };
  }
  if (config.auth !== undefined) options.auth = { username: config.auth.user, password: config.auth.password.reveal() };
  return new Etcd3(options);
}

/**
 * What an operator should change when etcd cannot be reached for a TLS reason (gRPC reports
 * only OpenSSL's words), appended to the reason on one line; other reasons are returned as they are.
 */
export function explainEtcdFailure(raw: string, config: ClusterConfig): string {
  // OpenSSL's report spans lines: one log line says it all.
  const reason = raw.replace(/\s*\n\s*/g, ' ').trim();
  if (/alert bad certificate|alert certificate required|alert unknown ca/i.test(reason)) {
    return config.tls?.cert === undefined
      ? `${reason}; etcd asks for a client certificate: set cluster.tls.cert and cluster.tls.key`
      : `${reason}; etcd refused this node's client certificate (cluster.tls.cert): it must be signed by a CA in etcd's --trusted-ca-file`;
  }
  if (/self[- ]signed certificate|unable to verify the first certificate|unable to get local issuer/i.test(reason)) {
    return `${reason}; this node does not trust etcd's certificate: set cluster.tls.ca to the CA that signed it`;
  }
  return reason;
}
