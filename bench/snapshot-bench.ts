/**
 * Snapshot of a running busybox container (LxcProvider.snapshot: freeze through the cgroup,
 * cp -a --reflink=auto, thaw, record) against a bare `cp -a` of the same rootfs, in an isolated lxcpath. Prints p50 and
 * p95 and the ratio; the target is a p50 below 200 ms for copy-on-write containers.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { API_VERSION } from '../src/api/v1alpha1/group.js';
import { validateObject } from '../src/api/v1alpha1/validate.js';
import type { Container } from '../src/api/v1alpha1/types.js';
import { rootfsPath } from '../src/providers/lxc/container-paths.js';
import { LxcProvider } from '../src/providers/lxc/lxc-provider.js';
import { LxcTools } from '../src/providers/lxc/lxc-tools.js';
import { type Desired, hostNameOf, specHashOf } from '../src/store/desired.js';
import { objectKey } from '../src/store/object-key.js';

const run = promisify(execFile);

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
};

/** Takes `count` snapshots of one running container and as many bare copies; returns the figures. */
export async function snapshotBench(count = 20): Promise<Record<string, number | string>> {
  const logger = pino({ level: 'silent' });
  const lxcpath = await mkdtemp(join(tmpdir(), 'hyperlet-snapshot-bench-'));
  const name = `sb${process.pid % 100000}`;
  const provider = new LxcProvider({ lxcpath, logger, tools: new LxcTools({ logger }) });
  const result = validateObject({
    apiVersion: API_VERSION, kind: 'Container', metadata: { name, namespace: 'default' },
    spec: { template: 'busybox', state: 'Running', gracefulStopSeconds: 0, network: [{ type: 'none' }] },
  });
  if (!result.ok) throw new Error('cannot build the bench object');
  const object = result.object as Container;
  const d: Desired<'Container'> = {
    key: objectKey('dir', 'default', 'Container', name), source: 'dir', object, id: `bench-${name}`, generation: 1,
    specHash: specHashOf(object.spec), hostName: hostNameOf(object),
  };
  const signal = AbortSignal.timeout(600_000);
  // The system clock's timers are unref'd (a daemon has other handles): hold the loop open while the freezer is polled.
  const keepAlive = setInterval(() => undefined, 1_000);
  try {
    await provider.create(d, signal);
    await provider.setState(d, 'Running', (await provider.observe(d, signal))!, signal);
    const snapMs: number[] = [];
    const cpMs: number[] = [];
    for (let i = 0; i < count; i++) {
      let t = performance.now();
      await provider.snapshot(d, `b${i}`, {}, signal);
      snapMs.push(performance.now() - t);
      t = performance.now();
      await run('cp', ['-a', '--reflink=auto', '--', rootfsPath(lxcpath, name), join(lxcpath, `copy-${i}`)]);
      cpMs.push(performance.now() - t);
    }
    const p50 = quantile(snapMs, 0.5);
    const cpP50 = quantile(cpMs, 0.5);
    return {
      snapshots: count, snapshotP50Ms: Math.round(p50), snapshotP95Ms: Math.round(quantile(snapMs, 0.95)),
      bareCopyP50Ms: Math.round(cpP50), ratioToBareCopy: Number((p50 / cpP50).toFixed(2)), targetP50Ms: 200,
    };
  } finally {
    await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k']).catch(() => undefined);
    await run('lxc-destroy', ['-P', lxcpath, '-n', name]).catch(() => undefined);
    await rm(lxcpath, { recursive: true, force: true });
    clearInterval(keepAlive);
  }
}
