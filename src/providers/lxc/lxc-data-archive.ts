/**
 * A stopped container's data as one archive, for moves between nodes: a tar of its rootfs with
 * numeric owners (the unprivileged ids stay shifted as they are; both hosts must use the same id
 * map, the host policy's idmap). The format is this file's alone: the destination's importData
 * reads what the source's exportData wrote, so a later format (the backup archive of the
 * snapshots issue) replaces both functions without touching the handover around them.
 *
 * Guarantees: export never changes the container; import is idempotent and atomic per rootfs: the
 * archive is unpacked into a hidden sibling directory, which replaces the rootfs by two renames,
 * so a crash leaves either the old rootfs, or the new one, or both beside each other (the next
 * import cleans up). tar runs with argv arrays only.
 */
import { spawn } from 'node:child_process';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { failpoint } from '../../shared/failpoint.js';
import { containerDir, rootfsPath } from './container-paths.js';
import { exists } from './lxc-observer.js';

/** The content type of what exportRootfs writes (for the HTTP handover). */
export const ROOTFS_ARCHIVE_TYPE = 'application/x-tar';

/**
 * Streams the rootfs of container `hostName` as a tar (numeric owners). The container must be
 * stopped; the stream errors when tar fails.
 */
export function exportRootfs(lxcpath: string, hostName: string, signal: AbortSignal): Readable {
  const child = spawn('tar', ['--numeric-owner', '-C', rootfsPath(lxcpath, hostName), '-cf', '-', '.'], {
    stdio: ['ignore', 'pipe', 'pipe'], signal,
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-2000);
  });
  const out = child.stdout;
  child.on('error', (err) => out.destroy(new Error(`cannot archive the rootfs of ${hostName}: ${err.message}`)));
  child.on('close', (code) => {
    if (code !== 0) out.destroy(new Error(`cannot archive the rootfs of ${hostName}: tar exit code ${String(code)}: ${stderr.trim()}`));
  });
  return out;
}

/** Replaces the rootfs of the stopped container `hostName` with the tar at `archivePath` (see the file comment). */
export async function importRootfs(lxcpath: string, hostName: string, archivePath: string, signal: AbortSignal): Promise<void> {
  const dir = containerDir(lxcpath, hostName);
  const staging = join(dir, '.rootfs.handover');
  const old = join(dir, '.rootfs.replaced');
  const rootfs = rootfsPath(lxcpath, hostName);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { mode: 0o755 });
  await runTar(['--numeric-owner', '-p', '-C', staging, '-xf', archivePath], `unpack the data of ${hostName}`, signal);
  failpoint('lxc.import.unpacked');
  await rm(old, { recursive: true, force: true });
  if (await exists(rootfs)) await rename(rootfs, old);
  await rename(staging, rootfs);
  await rm(old, { recursive: true, force: true });
}

function runTar(args: readonly string[], what: string, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('tar', [...args], { stdio: ['ignore', 'ignore', 'pipe'], signal });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-2000);
    });
    child.on('error', (err) => reject(new Error(`cannot ${what}: ${err.message}`, { cause: err })));
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`cannot ${what}: tar exit code ${String(code)}: ${stderr.trim()}`));
    });
  });
}
