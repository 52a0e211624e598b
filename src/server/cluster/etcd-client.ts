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
