/**
 * Failpoints: named instants in host-changing steps where crash tests stop the process dead, as
 * etcd's gofail does. Inert unless the environment variable HYPERLET_FAILPOINTS lists the name
 * (comma-separated, read once at start); then the process kills itself with SIGKILL exactly there,
 * nothing flushed, nothing cleaned up, as `kill -9` would at that instant.
 *
 * The points (each placed after the effect its name says, before the next one):
 * - LXC create: `lxc.create.staged` (directory with marker prepared), `lxc.create.placed` (renamed
 *   into place), `lxc.create.made` (lxc-create done), `lxc.create.configured` (config written);
 *   update: `lxc.update.configured`, `lxc.update.applied` (live cgroup set); delete:
 *   `lxc.delete.stopped`, `lxc.delete.trashed` (directory moved out of the lxcpath).
 * - LXC snapshots (lxc-snapshots.ts): `lxc.snapshot.frozen`, `lxc.snapshot.copied`,
 *   `lxc.snapshot.placed`, `lxc.snapshot.delete.moved`; restore: `lxc.restore.copied`,
 *   `lxc.restore.swapped-out`, `lxc.restore.swapped`, `lxc.restore.marked` (marker records the request).
 * - Every atomic file write of the LXC provider: `write:BASENAME` (temporary file written, not
 *   yet renamed), e.g. `write:hyperlet.json`, `write:config`.
 * - libvirt: `libvirt.pool.defined`, `libvirt.create.defined` (partial definition),
 *   `libvirt.create.volume` (after each volume), `libvirt.start.started`, `libvirt.update.defined`,
 *   `libvirt.update.volume` (after each volume made for an added disk), `libvirt.update.applied`,
 *   `libvirt.adopt.marked`, `libvirt.delete.destroyed`, `libvirt.snapshot.taken`,
 *   `libvirt.snapshot.deleted`, `libvirt.restore.reverted`, `libvirt.restore.marked`,
 *   `libvirt.delete.volumes-deleted`.
 * - Image cache: `images.download.verified` (download complete and verified in its hidden partial
 *   file, not yet renamed), `images.unpack.extracted` (tree unpacked and shifted in its hidden
 *   staging directory, not yet renamed).
 * - State DB: `state.remembering` (identities and status are on disk, the object about to be
 *   acted on not yet), `state.remembered` (it is), `state.forgetting` (its instance is gone, its
 *   row not yet), `state.stop-deadline` (a graceful stop's deadline is on disk, the instance not
 *   yet asked to shut down).
 * - Moves with data (sources/kube-handover.ts): `handover.exporting` (old node: instance stopped for
 *   the move, nothing sent yet), `handover.fetched` (new node: the data is complete on its disk,
 *   nothing created), `handover.imported` (new node: data in place, old node not released yet);
 *   `lxc.import.unpacked` (the archive unpacked beside the rootfs, not yet swapped in).
 * - Graceful stops: `lxc.stop.requested` / `libvirt.stop.requested` (asked to shut down, the
 *   pass not yet over), `lxc.stop.forced` / `libvirt.stop.forced` (killed or destroyed).
 *
 * Guarantees: a disabled failpoint costs one Set lookup and does nothing else. An enabled one
 * writes `failpoint NAME: killing the process` to stderr (synchronously) before it kills, so a
 * test can tell that the process died there and not somewhere else.
 */
import { writeSync } from 'node:fs';

/** The environment variable that enables failpoints. */
export const FAILPOINTS_ENV = 'HYPERLET_FAILPOINTS';

/** The failpoint names listed in `value` (HYPERLET_FAILPOINTS syntax: comma-separated, blanks ignored). */
export function parseFailpoints(value: string | undefined): ReadonlySet<string> {
  return new Set((value ?? '').split(',').map((s) => s.trim()).filter((s) => s !== ''));
}

const enabled = parseFailpoints(process.env[FAILPOINTS_ENV]);

/** Kills this process with SIGKILL when HYPERLET_FAILPOINTS names `name`; otherwise does nothing. */
export function failpoint(name: string): void {
  if (enabled.size === 0 || !enabled.has(name)) return;
  try {
    writeSync(2, `failpoint ${name}: killing the process\n`);
  } catch {
    // stderr gone: die all the same
  }
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL to ourselves is delivered before the kill call returns to JavaScript; never go on.
  for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1_000);
}
