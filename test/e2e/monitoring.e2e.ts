/**
 * The shipped alert rules and Grafana dashboard against the real tools: `promtool check rules`
 * and `promtool test rules` (Debian's prometheus package) on synthetic series, a mutated rule
 * that the tests must catch, and one real `hyperlet run` (dir and git sources, real LXC in a temp
 * lxcpath) whose /metrics must export every metric the rules and the dashboard query.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { readApiToken } from '../../src/state/state-dir.js';
import { TestRepo } from '../support/git-repo.js';
import { exposedMetricNames, grafanaQueries, promqlMetricNames, ruleQueries } from '../support/promql-names.js';
import { DaemonProcess, repoRoot } from './support/daemon-process.js';
import { until } from './support/until.js';
import { WebhookReceiver } from './support/webhook-receiver.js';

const run = promisify(execFile);
const suffix = randomBytes(2).toString('hex');
/** Series Prometheus makes itself, not the daemon. */
const PROMETHEUS_OWN = new Set(['up', 'ALERTS']);

async function promtool(args: string[], cwd: string): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run('promtool', args, { cwd, timeout: 120_000 });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new Error('promtool is missing: run make host (Debian package prometheus)');
    return { code: typeof e.code === 'number' ? e.code : 1, out: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

const container = (name: string, state: 'Running' | 'Stopped'): string => [
  'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', 'metadata:', `  name: ${name}`, 'spec:', '  template: busybox',
  `  state: ${state}`, '  resources:', '    cpu: 1', '    memory: 64Mi', '  network:', '    - type: none', '',
].join('\n');

describe('monitoring: alert rules and dashboard', function () {
  this.timeout(300_000);
  let tmp = '';
  let lxcpath = '';
  let daemon: DaemonProcess | undefined;
  const receiver = new WebhookReceiver(undefined);

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), `hyperlet-ops-mon-${suffix}-`));
    // Unprivileged containers' mapped root must pass through the directories above their lxcpath.
    await chmod(tmp, 0o711);
    lxcpath = join(tmp, 'lxc');
    await mkdir(lxcpath);
  });

  after(async () => {
    await daemon?.stop('SIGKILL');
    await receiver.down();
    for (const name of await readdir(lxcpath).catch(() => [] as string[])) {
      await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
    }
    if (tmp !== '') await rm(tmp, { recursive: true, force: true });
  });

  it('promtool accepts the rules file and its tests pass', async () => {
    const monitoring = join(repoRoot, 'monitoring');
    const check = await promtool(['check', 'rules', 'hyperlet-rules.yaml'], monitoring);
    expect(check.code, check.out).to.equal(0);
    const test = await promtool(['test', 'rules', 'hyperlet-rules.test.yaml'], monitoring);
    expect(test.code, test.out).to.equal(0);
    expect(test.out).to.include('SUCCESS');
  });

  it('the rule tests catch a rule that fires too early', async () => {
    const dir = join(tmp, 'mutant');
    await mkdir(dir);
    await copyFile(join(repoRoot, 'monitoring', 'hyperlet-rules.test.yaml'), join(dir, 'hyperlet-rules.test.yaml'));
    const rules = await readFile(join(repoRoot, 'monitoring', 'hyperlet-rules.yaml'), 'utf8');
    const mutant = rules.replace(/(alert: HyperletObjectNotReady\n(?:.*\n)*?\s+for: )10m/, '$11m');
    expect(mutant).to.not.equal(rules);
    await writeFile(join(dir, 'hyperlet-rules.yaml'), mutant);
    const test = await promtool(['test', 'rules', 'hyperlet-rules.test.yaml'], dir);
    expect(test.code, test.out).to.not.equal(0);
    expect(test.out).to.include('HyperletObjectNotReady');
  });

  it('a running daemon exports every metric the rules and the dashboard query', async () => {
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => { throw new Error('needs the LXC busybox template: run make host'); });
    const manifests = join(tmp, 'manifests');
    await mkdir(manifests);
    await writeFile(join(manifests, 'web.yaml'), container(`mon${suffix}-web`, 'Running'));
    const repo = await TestRepo.create(join(tmp, 'repo'));
    await repo.write('ct.yaml', container(`mon${suffix}-git`, 'Stopped'));
    await repo.commit('one stopped container');
    await receiver.up();
    daemon = await DaemonProcess.start([
      '--notify', receiver.url,
      '--source', `dir:${manifests}`, '--source', `git:${repo.dir}`, '--lxcpath', lxcpath, '--state', join(tmp, 'state', 'state.db'),
      '--http', '127.0.0.1:0', '--kinds', 'Container,VirtualMachine', '--node', `mon${suffix}`, '--interval', '1h',
    ], join(tmp, 'daemon.log'));
    const d = daemon;
    const scrape = async (): Promise<string> => (await d.get('/metrics')).text;
    const sample = (text: string, re: RegExp): string | undefined => text.split('\n').find((l) => re.test(l));

    const text = await until('both objects Ready in /metrics', async () => {
      const t = await scrape();
      const ready = t.split('\n').filter((l) => l.startsWith('hyperlet_object_ready{') && l.endsWith(' 1'));
      return ready.length === 2 ? t : undefined;
    }, 120_000);

    const exported = exposedMetricNames(text);
    const rulesText = await readFile(join(repoRoot, 'monitoring', 'hyperlet-rules.yaml'), 'utf8');
    const rules = yaml.load(rulesText) as { groups: { rules: { expr: string }[] }[] };
    const dashboard = JSON.parse(await readFile(join(repoRoot, 'monitoring', 'grafana-dashboard.json'), 'utf8')) as unknown;
    const queried = new Set([...ruleQueries(rules), ...grafanaQueries(dashboard)].flatMap(promqlMetricNames));
    expect(queried.size).to.be.greaterThan(15);
    const missing = [...queried].filter((m) => !exported.has(m) && !PROMETHEUS_OWN.has(m));
    expect(missing, 'queried but not exported').to.deep.equal([]);

    // The host gauges carry samples, not only declarations.
    const web = `source="dir",namespace="default",kind="Container",name="mon${suffix}-web"`;
    expect(sample(text, new RegExp(`^hyperlet_object_ready\\{${web}\\} 1$`))).to.be.a('string');
    expect(sample(text, /^hyperlet_objects\{kind="Container",phase="Stopped",ready="true"\} 1$/)).to.be.a('string');
    expect(sample(text, /^hyperlet_provider_up\{provider="lxc"\} 1$/)).to.be.a('string');
    expect(sample(text, new RegExp(`^hyperlet_node_info\\{node="mon${suffix}"\\} 1$`))).to.be.a('string');
    expect(sample(text, /^hyperlet_source_revision_behind\{source="git"\} 0$/)).to.be.a('string');
    expect(sample(text, /^hyperlet_source_synced\{source="dir"\} 1$/)).to.be.a('string');
    expect(sample(text, /^hyperlet_source_last_successful_fetch_timestamp_seconds\{source="git"\} \d/)).to.be.a('string');
    const sinkLabel = receiver.url.replace(/[/.]/g, '\\$&');
    expect(sample(text, new RegExp(`^hyperlet_notify_circuit_open\\{sink="${sinkLabel}"\\} 0$`))).to.be.a('string');
    expect(sample(text, new RegExp(`^hyperlet_notify_pending\\{sink="${sinkLabel}"\\} \\d+$`))).to.be.a('string');
    expect(sample(text, /^hyperlet_notify_events_total\{type="io.hyperlet.object.phase.changed"\} [1-9]/)).to.be.a('string');
    expect(sample(text, /^hyperlet_controller_last_resync_timestamp_seconds\{controller="Container"\} \d/)).to.be.a('string');

    // A commit that cannot be applied leaves the source behind, and the gauge says so.
    await repo.write('broken.yaml', 'apiVersion: hyperlet.io/v1alpha1\nkind: Container\nmetadata:\n  name: Not_Valid\nspec: {}\n');
    await repo.commit('an invalid object');
    const token = readApiToken(join(tmp, 'state', 'state.db'));
    const refresh = await fetch(`${d.baseUrl}/sources/git/refresh`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    expect(refresh.status).to.equal(202);
    await until('the git source to be behind, with a problem', async () => {
      const t = await scrape();
      const problems = Number(sample(t, /^hyperlet_source_problems\{source="git"\} /)?.split(' ')[1] ?? 0);
      return sample(t, /^hyperlet_source_revision_behind\{source="git"\} 1$/) !== undefined && problems > 0 ? true : undefined;
    }, 30_000);
  });
});
