import { Range, type Etcd3, type ITxnResponse } from 'etcd3';
import { ETCD_CALL_DEADLINE_MS } from './etcd-client.js';
import type { ClusterKeys } from './keys.js';

/**
 * Puts a group's text in one transaction that commits only if the group's key exists (a
 * replace) or not (a create), and no key under the groups prefix was written after
 * `checkedAt`, the revision of the registry the write was validated against: a port or host
 * name another writer claimed meanwhile cannot slip past the validation. When it does not
 * commit, the answer holds the group's key (if any) and the keys written since `checkedAt`.
 */
export function putGroupIfUnchangedSince(
  etcd: Etcd3,
  keys: ClusterKeys,
  { name, text, exists, checkedAt }: { name: string; text: string; exists: boolean; checkedAt: bigint },
): Promise<ITxnResponse> {
  const key = Buffer.from(keys.group(name));
  const groups = Range.prefix(keys.groups);
  const since = (checkedAt + 1n).toString();
  return etcd.kv.txn(
    {
      compare: [
        { key, target: 'Create', result: exists ? 'Greater' : 'Equal', create_revision: 0 },
        { key: groups.start, range_end: groups.end, target: 'Mod', result: 'Less', mod_revision: since },
      ],
      success: [{ request_put: { key, value: Buffer.from(text) } }],
      failure: [
        { request_range: { key, keys_only: true } },
        { request_range: { key: groups.start, range_end: groups.end, min_mod_revision: since, keys_only: true } },
      ],
    },
    { deadline: Date.now() + ETCD_CALL_DEADLINE_MS },
  );
}
