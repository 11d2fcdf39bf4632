/**
 * One real busybox container at a time, `kubectl apply` to Running, with the real daemon
 * (`hyperlet run --source kube`, a child process with its own lxcpath) and a real kube-apiserver
 * (issue 13). Per try: the time from kubectl's spawn, and from the API server's acceptance (the
 * watch's ADDED event), to the watch event with phase Running; the lxc-create and lxc-start time
 * of that container in the same try (the daemon's debug log times every tool call); hyperlet's
 * share is the total less those two. Target: the share's p99 below 100 ms. kubectl's own time
 * (process start, discovery, the request) is printed apart, since it is not hyperlet's.
 * KUBE_LXC_BENCH_TRIES sets the tries (default 20). Needs root and the LXC packages (`make host`).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, createWriteStream, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { CustomObjectsApi, Watch } from '@kubernetes/client-node';
import yaml from 'js-yaml';
import { shareConnections } from '../src/kube/kube-client.js';
import { KubeTestEnv, REPO_ROOT } from '../test/e2e/support/kube-testenv.js';

const run = promisify(execFile);

interface Seen { addedAt?: number; runningAt?: number }

/** The p-th percentile (0..100) of `xs`, nearest rank. */
function percentile(xs: readonly number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}

async function destroyAll(lxcpath: string): Promise<void> {
  for (const name of readdirSync(lxcpath, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)) {
    await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
    await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
  }
}

/** Runs the benchmark once and returns its figures. */
export async function kubeLxcBench(): Promise<Record<string, number | string>> {
  if (process.getuid?.() !== 0) throw new Error('cannot run the kube LXC bench: it needs root for LXC');
  const tries = Number(process.env.KUBE_LXC_BENCH_TRIES ?? 20);
  const ns = `perf-kube-lxc-${process.pid}`;
  const node = `perf-node-${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'hyperlet-perf-kube-lxc-'));
  chmodSync(dir, 0o711); // unprivileged containers need every directory above the lxcpath searchable
  const lxcpath = join(dir, 'lxc');
  mkdirSync(lxcpath, { mode: 0o711 });
  const env = await KubeTestEnv.start();
  let child: ChildProcess | undefined;
  let watchAbort: AbortController | undefined;
  try {
    await env.installHyperlet();
    await env.kubectlOk(['create', 'namespace', ns]);
    // The daemon's log: one JSON line per tool call (debug) with its duration and the container's name.
    const tools: { tool: string; name: string; durationMs: number }[] = [];
    let running: () => void = () => {};
    const isRunning = new Promise<void>((r) => { running = r; });
    child = spawn(process.execPath, [join(REPO_ROOT, 'bin/hyperlet.js'), 'run',
      '--source', 'kube', '--kubeconfig', env.agentKubeconfigPath, '--namespace', ns, '--node', node,
      '--lxcpath', lxcpath, '--state', join(dir, 'state', 'state.db'), '--kinds', 'Container', '--http', 'off',
      '--resync', '1h', '--log-level', 'debug'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    // KUBE_LXC_BENCH_LOG=FILE keeps the daemon's whole debug log, to see where a slow try's time went.
    const keep = process.env.KUBE_LXC_BENCH_LOG === undefined ? undefined : createWriteStream(process.env.KUBE_LXC_BENCH_LOG);
    const onText = (text: string): void => {
      keep?.write(`${text}\n`);
      tail.push(text);
      if (tail.length > 30) tail.shift();
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return;
      }
      if (line.msg === 'hyperlet running') running();
      if (line.msg === 'tool call' && Array.isArray(line.args) && typeof line.durationMs === 'number') {
        const args = line.args as string[];
        const at = args.indexOf('-n');
        if (at >= 0) tools.push({ tool: String(line.tool), name: args[at + 1] ?? '', durationMs: line.durationMs });
      }
    };
    createInterface({ input: child.stdout! }).on('line', onText);
    createInterface({ input: child.stderr! }).on('line', onText);
    await Promise.race([isRunning, new Promise((_, reject) => setTimeout(() => {
      reject(new Error(`cannot see the daemon running within 60 s; its last lines:\n${tail.join('\n')}`));
    }, 60_000))]);

    // One watch sees each object accepted (ADDED) and Running, as `kubectl wait` would.
    const seen = new Map<string, Seen>();
    let wake: () => void = () => {};
    const admin = shareConnections(env.admin()).makeApiClient(CustomObjectsApi);
    const listed = await admin.listNamespacedCustomObject({ group: 'hyperlet.io', version: 'v1alpha1', plural: 'containers', namespace: ns }) as {
      metadata: { resourceVersion: string };
    };
    type Watched = { metadata: { name: string }; status?: { phase?: string } };
    watchAbort = await new Watch(env.admin()).watch(`/apis/hyperlet.io/v1alpha1/namespaces/${ns}/containers`,
      { resourceVersion: listed.metadata.resourceVersion }, (phase: string, o: Watched) => {
        const now = performance.now();
        const s = seen.get(o.metadata.name) ?? {};
        seen.set(o.metadata.name, s);
        if (phase === 'ADDED') s.addedAt ??= now;
        if (o.status?.phase === 'Running') s.runningAt ??= now;
        wake();
      }, () => wake());

    const load0 = loadavg()[0]!;
    const rows: { totalMs: number; fromAddedMs: number; kubectlMs: number; createMs: number; startMs: number }[] = [];
    for (let i = 0; i < tries; i++) {
      const name = `bb${i}`;
      const doc = { apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: ns }, spec: { template: 'busybox', nodeName: node } };
      const t0 = performance.now();
      await env.kubectlOk(['apply', '-f', '-'], { input: yaml.dump(doc) });
      const kubectlMs = performance.now() - t0;
      const deadline = Date.now() + 180_000;
      while (seen.get(name)?.runningAt === undefined) {
        if (Date.now() > deadline) throw new Error(`cannot see ${name} Running within 180 s`);
        await Promise.race([new Promise<void>((r) => { wake = r; }), new Promise((r) => setTimeout(r, 1000))]);
      }
      const s = seen.get(name)!;
      const hostName = `${ns}.${name}`;
      const toolMs = (tool: string): number => tools.filter((t) => t.tool === tool && t.name === hostName).reduce((n, t) => n + t.durationMs, 0);
      rows.push({
        totalMs: s.runningAt! - t0, fromAddedMs: s.runningAt! - (s.addedAt ?? t0), kubectlMs,
        createMs: toolMs('lxc-create'), startMs: toolMs('lxc-start'),
      });
    }
    const share = rows.map((r) => r.totalMs - r.createMs - r.startMs);
    const shareFromAdded = rows.map((r) => r.fromAddedMs - r.createMs - r.startMs);
    const r0 = (x: number): number => Math.round(x);
    const median = (xs: readonly number[]): number => r0(percentile(xs, 50));
    return {
      tries,
      loadAverage1m: `${load0.toFixed(1)} at start, ${loadavg()[0]!.toFixed(1)} at end (2 cores shared)`,
      totalMsMedian: median(rows.map((r) => r.totalMs)),
      lxcCreateMsMedian: median(rows.map((r) => r.createMs)),
      lxcStartMsMedian: median(rows.map((r) => r.startMs)),
      kubectlApplyMsMedian: median(rows.map((r) => r.kubectlMs)),
      hyperletShareMsMedian: median(share),
      hyperletShareMsP99: r0(percentile(share, 99)),
      hyperletShareFromAcceptedMsMedian: median(shareFromAdded),
      hyperletShareFromAcceptedMsP99: r0(percentile(shareFromAdded, 99)),
      hyperletShareFromAcceptedMsEach: shareFromAdded.map(r0).join(' '),
      target: 'hyperletShareMsP99 < 100 (total from kubectl apply less lxc-create and lxc-start); FromAccepted leaves kubectl itself out',
    };
  } finally {
    watchAbort?.abort();
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    await destroyAll(lxcpath);
    rmSync(dir, { recursive: true, force: true });
    await env.stop();
  }
}

if (process.argv[1]?.endsWith('kube-lxc-bench.js') === true) {
  process.stdout.write(`kube-lxc: ${JSON.stringify(await kubeLxcBench())}\n`);
}
