/**
 * The daemon's side of the backup routes (server/backup-api.ts): finds the declared object and
 * its provider, checks the archive path against the host policy (paths.backups), and runs the
 * provider's backup() or restoreBackup().
 *
 * Guarantees: a backup is written to a hidden `.NAME.partial-TIME` file beside the target and
 * renamed to the target only when complete, so the target file is whole or absent; a failed or
 * cancelled backup removes the partial file. A restore creates nothing unless the provider
 * finished it (the provider's own guarantee). Every refusal happens before a byte is written.
 * Caveats: a backup runs beside the reconcile loop, not in it (a long copy must not hold a
 * worker); it only reads the instance, and a running instance is read from a snapshot taken for it.
 */
import { createReadStream } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { type Kind, isKind, KINDS } from '../api/v1alpha1/group.js';
import { checkBackupFile } from '../policy/path-rules.js';
import type { PolicyFs } from '../policy/policy-fs.js';
import { type HostPolicy, matchesAny, rulesFor } from '../policy/host-policy.js';
import { readBackupHead } from '../providers/backup/backup-archive.js';
import { writeBackupFile } from '../providers/backup/backup-file.js';
import type { Provider } from '../providers/provider.js';
import { type BackupApi, BackupRequestError, type BackupRun } from '../server/backup-api.js';
import type { Clock } from '../shared/clock.js';
import type { StoreReader } from '../store/desired-store.js';
import type { Desired } from '../store/desired.js';

/** What DaemonBackups reads from. */
export interface DaemonBackupsOptions {
  readonly store: StoreReader;
  readonly providers: ReadonlyMap<Kind, Provider>;
  readonly policy: HostPolicy;
  readonly fs: PolicyFs;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Records an Event (and audit entry) on the object a backup was made of. */
  readonly record?: (d: Readonly<Desired>, type: 'Normal' | 'Warning', reason: string, message: string) => void;
}

/** Backups and restores from archives for the HTTP API; see the file comment. */
export class DaemonBackups implements BackupApi {
  constructor(private readonly o: DaemonBackupsOptions) {}

  async backup(kind: string, namespace: string, name: string, params: URLSearchParams): Promise<BackupRun> {
    if (!isKind(kind)) throw new BackupRequestError(404, `unknown kind ${kind}`);
    const desired = this.o.store.list().find((d) => d.object.kind === kind && (d.object.metadata.namespace ?? 'default') === namespace
      && d.object.metadata.name === name);
    if (desired === undefined || desired.deleting === true) throw new BackupRequestError(404, `${KINDS[kind].singular} ${namespace}/${name} is not declared here`);
    const provider = this.o.providers.get(kind);
    if (provider?.backup === undefined) throw new BackupRequestError(409, `${KINDS[kind].singular}s cannot be backed up on this host`);
    const to = params.get('to') ?? '';
    const compression = params.get('compression') ?? 'zstd';
    if (compression !== 'zstd' && compression !== 'gzip') throw new BackupRequestError(400, 'compression must be zstd or gzip');
    const problem = await checkBackupFile(to, 'write', rulesFor(this.o.policy, desired.source, namespace).backupDirs, this.o.fs);
    if (problem !== undefined) throw new BackupRequestError(403, `cannot write the backup: the host policy refuses it (paths.backups): ${problem}`);
    const backup = provider.backup.bind(provider);
    return {
      run: async (onProgress, signal) => {
        try {
          const summary = await writeBackupFile(to, this.o.clock, (out) => backup(desired, { out, compression, onProgress, scratchDir: dirname(to) }, signal));
          const message = `Backed up to ${to}: ${summary.trailer.bytes} bytes, ${summary.compressedBytes} compressed, sha256 ${summary.trailer.digest}`;
          this.o.record?.(desired, 'Normal', 'BackedUp', message);
          return { file: to, bytes: summary.trailer.bytes, compressedBytes: summary.compressedBytes, sha256: summary.trailer.digest };
        } catch (err) {
          this.o.record?.(desired, 'Warning', 'BackupFailed', `Backup to ${to} failed: ${(err as Error).message}`);
          throw err;
        }
      },
    };
  }

  async restore(params: URLSearchParams): Promise<BackupRun> {
    const from = params.get('from') ?? '';
    const as = params.get('as') ?? undefined;
    const namespace = params.get('namespace') ?? undefined;
    const pool = params.get('pool') ?? undefined;
    // The policy of the namespace the instance is restored into; a restore has no source yet.
    const rules = rulesFor(this.o.policy, '', namespace ?? 'default');
    const problem = await checkBackupFile(from, 'read', rules.backupDirs, this.o.fs);
    if (problem !== undefined) throw new BackupRequestError(403, `cannot read the backup: the host policy refuses it (paths.backups): ${problem}`);
    let head;
    try {
      head = await readBackupHead(createReadStream(from), from);
    } catch (err) {
      throw new BackupRequestError(400, (err as Error).message);
    }
    const pools = pool === undefined ? ((head.details?.disks ?? []) as { pool?: string }[]).map((d) => d.pool ?? '') : [pool];
    const refused = pools.find((p) => !matchesAny(rules.pools, p));
    if (head.kind === 'VirtualMachine' && refused !== undefined) {
      throw new BackupRequestError(403, `cannot restore ${from} into storage pool ${refused}: the host policy refuses it (pools: ${rules.pools.join(', ')})`);
    }
    if (!isKind(head.kind)) throw new BackupRequestError(400, `cannot restore ${from}: it holds an unknown kind ${head.kind}`);
    const provider = this.o.providers.get(head.kind);
    if (provider?.restoreBackup === undefined) throw new BackupRequestError(409, `${KINDS[head.kind].singular}s cannot be restored on this host`);
    const restoreBackup = provider.restoreBackup.bind(provider);
    return {
      run: async (onProgress, signal) => {
        const restored = await restoreBackup({
          input: createReadStream(from), label: from, onProgress, scratchDir: dirname(from), ...(pool === undefined ? {} : { pool }),
          ...(as === undefined ? {} : { name: as }), ...(namespace === undefined ? {} : { namespace }),
        }, signal);
        this.o.logger.info({ from, hostName: restored.hostName, bytes: restored.summary.trailer.bytes }, 'restored from backup');
        return { hostName: restored.hostName, kind: head.kind, object: restored.object, sha256: restored.summary.trailer.digest };
      },
    };
  }
}
