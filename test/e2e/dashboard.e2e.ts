/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core, against one real
 * `hyperlet run` with real LXC busybox containers. The page loads from the daemon alone and
 * weighs under 200 KB; a container stopped from outside with lxc-stop shows Stopped, then Running
 * again after the repair, each within a second, with no request but the event stream; the keyboard
 * reaches everything; the object page shows spec (secrets redacted), conditions, events and the
 * console; the token is validated before actions are offered, a container's Snapshot button takes
 * a snapshot through the reconcile loop, and a VM's Reboot button (and
 * `hyperlet reboot`) reboots the real guest once. Screenshots go to test-artifacts/.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Browser, type Page, chromium } from 'playwright-core';
import { parseInfo } from '../../src/providers/lxc/lxc-tools.js';
import { readApiToken } from '../../src/state/state-dir.js';
import { DaemonProcess, cliPath, repoRoot } from './support/daemon-process.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const suffix = randomBytes(2).toString('hex');
const n = (name: string): string => `ui${suffix}-${name}`;
const CHROMIUM = '/usr/bin/chromium';
const SECRET = `s3cret-${randomBytes(6).toString('hex')}`;

const VM = n('vm');
const VM_CONSOLE = join('/var/log/hyperlet/console', `${VM}.log`);
const virtualMachine = (guestDir: string): string => [
  'apiVersion: hyperlet.io/v1alpha1', 'kind: VirtualMachine', `metadata: {name: ${VM}}`, 'spec:', '  hypervisor: qemu',
  '  resources: {cpu: 1, memory: 128Mi}',
  `  boot: {kernel: ${guestDir}/vmlinuz, initrd: ${guestDir}/initrd.img, cmdline: "console=ttyS0 quiet"}`,
  '  gracefulStopSeconds: 5', '',
].join('\n');
/** How often the test guest has booted: it prints this line on its serial console at each boot. */
const boots = async (): Promise<number> => ((await readFile(VM_CONSOLE, 'utf8').catch(() => '')).match(/hyperlet-guest: up/g) ?? []).length;

const container = (name: string, extra: string[] = []): string => [
  'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', 'metadata:', `  name: ${name}`, '  labels:', '    tier: web', 'spec:',
  '  template: busybox', '  state: Running', '  gracefulStopSeconds: 1', '  resources:', '    cpu: 1', '    memory: 64Mi',
  '  network:', '    - type: none', ...extra, '',
].join('\n');

describe('dashboard in a real browser (Chromium)', function () {
  this.timeout(300_000);
  let tmp = '';
  let lxcpath = '';
  let statePath = '';
  let daemon: DaemonProcess | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const artifacts = join(repoRoot, 'test-artifacts');
  const requests: { url: string; atMs: number }[] = [];
  const responses: { url: string; bytes: number }[] = [];

  const lxcState = async (name: string): Promise<string | undefined> => {
    const { stdout } = await run('lxc-info', ['-P', lxcpath, '-n', name, '-s'], { timeout: 30_000 }).catch(() => ({ stdout: '' }));
    return parseInfo(stdout).state;
  };
  /**
   * The wall-clock time (ms) at which the page showed `phase` for `name` at or after `afterMs`, as
   * recorded in the page itself. (Browser code is passed as text: this project compiles without DOM types.)
   */
  const phaseShownAt = async (name: string, phase: string, afterMs = 0, timeoutMs = 30_000): Promise<number> => {
    const handle = await page.waitForFunction(
      `(window.phaseLog || []).find((l) => l.name === ${JSON.stringify(name)} && l.phase === ${JSON.stringify(phase)}`
        + ` && l.atMs >= ${afterMs})?.atMs`,
      undefined, { timeout: timeoutMs, polling: 'raf' });
    return (await handle.jsonValue()) as number;
  };
  const evaluate = async <T>(expression: string): Promise<T> => (await page.evaluate(expression));

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('needs root (LXC containers)');
    await access(CHROMIUM).catch(() => { throw new Error(`needs ${CHROMIUM}: run make host (Debian package chromium)`); });
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => { throw new Error('needs the LXC busybox template: run make host'); });
    tmp = await mkdtemp(join(tmpdir(), `hyperlet-ops-ui-${suffix}-`));
    await chmod(tmp, 0o711); // unprivileged containers (mapped root) must reach the lxcpath below
    lxcpath = join(tmp, 'lxc');
    statePath = join(tmp, 'state', 'state.db');
    await mkdir(lxcpath);
    await mkdir(join(tmp, 'manifests'));
    await mkdir(artifacts, { recursive: true });
    await writeFile(join(tmp, 'manifests', 'web.yaml'), container(n('web'), ['  environment:', `    API_TOKEN: ${SECRET}`]));
    await writeFile(join(tmp, 'manifests', 'db.yaml'), container(n('db')));
    if (!(await access('/run/libvirt/libvirt-sock').then(() => true, () => false))) throw new Error('needs libvirtd: run make host');
    const built = await run('bash', [join(repoRoot, 'scripts', 'build-test-guest.sh')], { timeout: 600_000 });
    const guestDir = built.stdout.trim().split('\n').pop() ?? '';
    await rm(VM_CONSOLE, { force: true });
    await writeFile(join(tmp, 'manifests', 'vm.yaml'), virtualMachine(guestDir));
    daemon = await DaemonProcess.start([
      '--source', `dir:${join(tmp, 'manifests')}`, '--lxcpath', lxcpath, '--state', statePath, '--http', '127.0.0.1:0',
      '--kinds', 'Container,VirtualMachine',
      '--node', n('node'),
    ], join(tmp, 'daemon.log'));
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
    // bypassCSP lets the test's own probes (waitForFunction) evaluate in the page; the page's CSP header is checked by itself.
    const context = await browser.newContext({ viewport: { width: 1400, height: 820 }, bypassCSP: true });
    // Record each phase the page shows, with the time, from inside the page (no polling from here).
    await context.addInitScript({
      content: `
        const log = [];
        window.phaseLog = log;
        new MutationObserver(() => {
          for (const cell of document.querySelectorAll('#objects tr[data-name] [data-phase]')) {
            const name = cell.closest('tr').dataset.name;
            const phase = cell.dataset.phase;
            const last = [...log].reverse().find((l) => l.name === name);
            if (!last || last.phase !== phase) log.push({ name, phase, atMs: Date.now() });
          }
        }).observe(document, { subtree: true, childList: true, attributes: true });`,
    });
    page = await context.newPage();
    page.on('request', (r) => requests.push({ url: r.url(), atMs: Date.now() }));
    page.on('response', (r) => void r.body().then((b) => responses.push({ url: r.url(), bytes: b.length }), () => undefined));
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') {
      await page?.screenshot({ path: join(artifacts, `dashboard-failed-${suffix}.png`), fullPage: true }).catch(() => undefined);
      if (daemon !== undefined) console.error(`--- daemon log ---\n${await daemon.logTail(40)}`);
      console.error(`--- ${VM_CONSOLE} ---\n${(await readFile(VM_CONSOLE, 'utf8').catch(() => '')).slice(-1500)}`);
    }
  });

  after(async () => {
    await browser?.close();
    await daemon?.stop('SIGKILL');
    await run('virsh', ['-c', 'qemu:///system', 'destroy', VM], { timeout: 60_000 }).catch(() => undefined);
    await run('virsh', ['-c', 'qemu:///system', 'undefine', VM, '--nvram'], { timeout: 60_000 }).catch(() => undefined);
    await rm(VM_CONSOLE, { force: true });
    for (const name of await readdir(lxcpath).catch(() => [] as string[])) {
      await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
    }
    if (tmp !== '') await rm(tmp, { recursive: true, force: true });
  });

  it('loads from the daemon alone, under 200 KB, and shows the host and every object', async () => {
    await page.goto(`${daemon!.baseUrl}/`);
    for (const name of ['web', 'db']) {
      await page.waitForSelector(`#objects tr[data-name="${n(name)}"] [data-phase="Running"]`, { timeout: 120_000 });
    }
    await page.waitForSelector('[data-card="providers"] .badge');
    expect(await page.textContent('#node')).to.equal(`node ${n('node')}`);
    expect(await page.textContent('[data-card="providers"]')).to.include('lxc');
    expect(await page.textContent('#live')).to.equal('live');
    const origins = new Set(requests.map((r) => new URL(r.url).origin));
    expect([...origins], 'every request goes to the daemon').to.deep.equal([daemon!.baseUrl]);
    await until('the page files to be measured', () => (responses.length >= 3 ? true : undefined), 10_000);
    const page3 = responses.filter((r) => ['/', '/ui/dashboard.js', '/ui/dashboard.css'].includes(new URL(r.url).pathname));
    const weight = page3.reduce((sum, r) => sum + r.bytes, 0);
    console.log(`      page weight: ${weight} bytes (${page3.map((r) => `${new URL(r.url).pathname} ${r.bytes}`).join(', ')})`);
    expect(weight).to.be.below(200 * 1024);
    const csp = (await fetch(`${daemon!.baseUrl}/`)).headers.get('content-security-policy') ?? '';
    expect(csp, 'the page may load nothing from elsewhere').to.include("default-src 'none'").and.include("connect-src 'self'");
    // Under its own CSP (a context that does not bypass it), the page works and breaks no rule.
    const strict = await browser!.newContext();
    const strictPage = await strict.newPage();
    const violations: string[] = [];
    strictPage.on('console', (m) => { if (m.text().includes('Content Security Policy')) violations.push(m.text()); });
    await strictPage.goto(`${daemon!.baseUrl}/`);
    await strictPage.waitForSelector(`#objects tr[data-name="${n('web')}"] [data-phase="Running"]`);
    await strictPage.waitForSelector('[data-card="providers"] .badge');
    await strictPage.click(`#objects tr[data-name="${n('web')}"]`);
    await strictPage.waitForSelector('[data-console]');
    expect(violations).to.deep.equal([]);
    await strict.close();
  });

  it('shows a container stopped from outside as Stopped, then Running again after the repair, each within a second', async () => {
    const name = n('db');
    const requestsBefore = requests.length;
    const stoppedAtMs = Date.now();
    await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 });
    // When the container really runs again, seen from outside (lxc-info every 10 ms).
    const runningAgainAtMs = await until('the container to run again', async () => {
      const state = await lxcState(name);
      return state === 'RUNNING' ? Date.now() : undefined;
    }, 60_000, 10);
    const shownStoppedAtMs = await phaseShownAt(name, 'Stopped', stoppedAtMs);
    const shownRunningAtMs = await phaseShownAt(name, 'Running', shownStoppedAtMs);
    console.log(`      page: Stopped ${shownStoppedAtMs - stoppedAtMs} ms after lxc-stop; `
      + `Running ${shownRunningAtMs - runningAgainAtMs} ms after the container ran again`);
    expect(shownStoppedAtMs - stoppedAtMs, 'Stopped shown within a second of lxc-stop').to.be.below(1_000);
    expect(shownRunningAtMs - runningAgainAtMs, 'Running shown within a second of the repair').to.be.below(1_000);
    expect(requests.slice(requestsBefore).map((r) => r.url), 'no request: the stream pushed both changes').to.deep.equal([]);
    await page.waitForSelector(`#timeline li >> text=${name}`);
    await page.screenshot({ path: join(artifacts, 'dashboard-overview.png') });
  });

  it('is usable by keyboard: filter, move, open, back', async () => {
    await page.keyboard.press('/');
    expect(await evaluate<string>('document.activeElement && document.activeElement.id')).to.equal('filter');
    await page.keyboard.type(n('web'));
    await until('one row', async () => ((await page.locator('#objects tbody tr').count()) === 1 ? true : undefined), 5_000);
    expect(await page.textContent('#count')).to.equal('(1 of 3)');
    await page.keyboard.press('Escape'); // clears the search field
    await page.keyboard.press('Escape'); // leaves it
    expect(await page.locator('#objects tbody tr').count()).to.equal(3);
    await page.keyboard.press('j');
    await page.keyboard.press('j');
    expect(await evaluate<string>('document.activeElement && document.activeElement.dataset.name')).to.equal(n('web'));
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-spec]');
    await page.waitForFunction(`document.querySelector('[data-spec]').textContent.includes('"template"')`);
    const spec = await page.textContent('[data-spec]');
    expect(spec).to.include('API_TOKEN').and.include('<redacted>');
    expect(await page.content(), 'the secret is nowhere in the page').to.not.include(SECRET);
    expect(await page.textContent('[data-conditions]')).to.include('Ready');
    await page.waitForSelector('#object-events li');
    await page.waitForSelector('[data-console]');
    await page.screenshot({ path: join(artifacts, 'dashboard-object.png'), fullPage: true });
    await page.keyboard.press('Escape');
    await page.waitForSelector('#overview:not([hidden])');
    await page.keyboard.press('?');
    expect(await evaluate<boolean>("document.querySelector('#help').open")).to.equal(true);
    await page.keyboard.press('Escape');
  });

  it('offers actions only with a token the daemon accepts, and keeps the token out of the address bar', async () => {
    await page.goto(`${daemon!.baseUrl}/#/o/Container/default/${n('web')}`);
    await page.waitForSelector('[data-spec]');
    expect(await page.textContent('#signin')).to.equal('Sign in');
    expect(await page.getAttribute('[data-actions]', 'data-actions')).to.equal('');
    const printed = await run(process.execPath, [cliPath, 'dashboard', '--server', daemon!.baseUrl, '--state', statePath], {
      timeout: 30_000,
    });
    const url = printed.stdout.trim();
    expect(url).to.equal(`${daemon!.baseUrl}/#token=${readApiToken(statePath)}`);
    await page.goto(url);
    const signInText = (want: string) => async (): Promise<true | undefined> =>
      ((await page.textContent('#signin')) === want ? true : undefined);
    await until('the page to accept the token', signInText('Sign out'), 10_000);
    expect(page.url(), 'the token left the address bar').to.not.include('token=');
    await page.evaluate("sessionStorage.setItem('hyperlet-token', 'wrong-token')");
    await page.reload();
    const stored = (): Promise<string | null> => evaluate<string | null>("sessionStorage.getItem('hyperlet-token')");
    await until('the page to drop the refused token', async () => ((await stored()) === null ? true : undefined), 10_000);
    await until('Sign in again', signInText('Sign in'), 10_000);
  });

  it('reboots a VM once from its Reboot button, and again from hyperlet reboot, through the reconcile loop', async () => {
    await page.goto(`${daemon!.baseUrl}/#token=${readApiToken(statePath)}`);
    await until('signed in', async () => ((await page.textContent('#signin')) === 'Sign out' ? true : undefined), 10_000);
    await page.goto(`${daemon!.baseUrl}/#/o/VirtualMachine/default/${VM}`);
    await page.waitForSelector('#detail [data-phase="Running"]', { timeout: 120_000 });
    await until('the guest to boot', async () => ((await boots()) >= 1 ? true : undefined), 120_000, 200);
    await page.waitForSelector('[data-actions~="reboot"] button:has-text("Reboot")');
    const first = await boots();
    await page.click('[data-actions] button:has-text("Reboot")');
    const asked = (): true | undefined => (requests.some((r) => r.url.endsWith(`/VirtualMachine/default/${VM}/reboot`)) ? true : undefined);
    await until('the reboot request', asked, 10_000);
    await until('the guest to boot again', async () => ((await boots()) === first + 1 ? true : undefined), 120_000, 200);
    await page.waitForSelector('#object-events li.Normal >> text=Rebooted', { timeout: 30_000 });
    const printed = await run(process.execPath, [cliPath, 'reboot', 'vm', VM, '--server', daemon!.baseUrl, '--state', statePath], {
      timeout: 30_000,
    });
    expect(printed.stdout).to.match(new RegExp(`virtualmachine default/${VM}: reboot requested`));
    await until('the guest to boot a third time', async () => ((await boots()) === first + 2 ? true : undefined), 120_000, 200);
    await new Promise((r) => setTimeout(r, 2_000));
    expect(await boots(), 'once per request').to.equal(first + 2);
    const refused = await run(process.execPath, [cliPath, 'reboot', 'ct', n('web'), '--server', daemon!.baseUrl, '--state', statePath])
      .then(() => 'accepted', (e: { stderr?: string }) => e.stderr ?? '');
    expect(refused).to.include('409').and.include('reboot is not offered for containers');
    await page.screenshot({ path: join(artifacts, 'dashboard-vm.png'), fullPage: true });
  });

  it('takes a one-off snapshot of a container from its Snapshot button, through the reconcile loop', async () => {
    await page.goto(`${daemon!.baseUrl}/#token=${readApiToken(statePath)}`);
    await until('signed in', async () => ((await page.textContent('#signin')) === 'Sign out' ? true : undefined), 10_000);
    await page.goto(`${daemon!.baseUrl}/#/o/Container/default/${n('web')}`);
    await page.waitForSelector('#detail [data-phase="Running"]', { timeout: 120_000 });
    await page.click('[data-actions~="snapshot"] button:has-text("Snapshot")');
    const asked = (): true | undefined => (requests.some((r) => r.url.endsWith(`/Container/default/${n('web')}/snapshot`)) ? true : undefined);
    await until('the snapshot request', asked, 10_000);
    await page.waitForSelector('#object-events li.Normal >> text=SnapshotTaken', { timeout: 60_000 });
    const taken = await readdir(join(lxcpath, n('web'), 'hyperlet-snapshots'));
    expect(taken).to.have.length(1);
    expect(taken[0]).to.match(/^snap-\d{8}t\d{6}z$/);
    expect(await page.textContent('body'), 'the environment value stays redacted').to.not.contain(SECRET);
  });
});
