import { readFileSync } from 'node:fs';
import { loadGroupDirectory, type ClusterConfig } from '../../config/index.js';
import { connectEtcd } from './etcd-client.js';
import { ClusterKeys } from './keys.js';

export interface ImportResult {
  imported: string[];
  /** Already in etcd: kept as they are (etcd is the registry now). */
  kept: string[];
  /** Files the loader refused, with their reason. */
  refused: string[];
}

/**
 * `commonserver cluster import DIR`: every valid group file of a groups directory becomes a
 * key under `PREFIX/groups/`, its text as written (a `${VAR}` secret stays a reference),
 * unless that group is in etcd already.
 */
export async function importGroupDirectory(config: ClusterConfig, dir: string): Promise<ImportResult> {
  const { groups, errors } = loadGroupDirectory(dir);
  const etcd = connectEtcd(config);
  const keys = new ClusterKeys(config.prefix);
  const result: ImportResult = { imported: [], kept: [], refused: errors.map((error) => error.message) };
  try {
    for (const spec of groups) {
      // The file as written, read where the loader read it.
      const text = readFileSync(spec.file, 'utf8');
      const key = keys.group(spec.name);
      const answer = await etcd.if(key, 'Create', '==', 0).then(etcd.put(key).value(text)).commit();
      (answer.succeeded ? result.imported : result.kept).push(spec.name);
    }
  } finally {
    etcd.close();
  }
  return result;
}
