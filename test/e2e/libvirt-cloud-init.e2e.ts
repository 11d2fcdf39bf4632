/**
 * VMs from disk images by URL with cloud-init (issue 11, parts 3–6) against the real libvirtd,
 * QEMU (type='qemu': software emulation), genisoimage and the real cloud-init in a Debian 12 guest,
 * with the daemon in process on a dir source. The image is built by scripts/build-test-vm-image.sh
 * (mmdebstrap, extlinux: BIOS boot from the disk; cached under /var/cache/hyperlet) and served by
 * a loopback HTTP server (127.0.0.1 only). The guest's one NIC is on an isolated libvirt network
 * this test creates (no forward: 192.168.X.0/24 on its own bridge, DHCP by libvirt's dnsmasq).
 *
 * Proven from outside: the VM boots from its overlay on the cached base, cloud-init sets the host
 * name, writes a file and installs the SSH key (the runcmd prints them on the serial console, read
 * from the console log), the DHCP lease shows in status.addresses, the guest agent answers on the
 * channel hyperlet adds, a graceful stop powers the guest off from inside, a UEFI VM runs on OVMF.
 * The user-data comes from the secrets directory (userDataFrom) and never shows in status. Bad
 * input (404, wrong sha256, a truncated download, a file that is no image, a qcow2 naming a
 * backing file, an image larger than the declared disk, a cloud-init payload over the limit):
 * each a clear condition or validation problem, and no domain, volume or seed left.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Daemon } from '../../src/daemon/daemon.js';
import { DEFAULT_HOST_POLICY, type HostPolicy } from '../../src/policy/host-policy.js';
import { StateDb } from '../../src/state/state-db.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const sfx = randomBytes(2).toString('hex');
const n = (what: string): string => `vmimage-${sfx}-${what}`;
const NET = `hyperlet-vmimage-${sfx}`;
const POOL = `hyperlet-vmimage-${sfx}`;
const BRIDGE = `hlvi${sfx}`;
const SUBNET = `192.168.${200 + (parseInt(sfx, 16) % 50)}`;
const CONSOLE_DIR = '/var/log/hyperlet/console';
const SEED_DIR = '/var/lib/hyperlet/cloud-init';
const SSH_KEY = `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHlwZXJsZXQtZTJlLWtleS0${sfx} e2e@hyperlet`;

interface Condition { type: string; status: string; reason: string; message: string }
interface Row { name: string; status?: { phase?: string; conditions?: Condition[]; addresses?: string[] } }

async function virsh(...args: string[]): Promise<string> {
  return (await run('virsh', ['-c', 'qemu:///system', ...args], { timeout: 60_000 })).stdout;
}

const vm = (name: string, disk: string, extra: string[] = []): string => [
  'apiVersion: hyperlet.io/v1alpha1', 'kind: VirtualMachine', 'metadata:', `  name: ${name}`,
  'spec:', '  hypervisor: qemu', '  gracefulStopSeconds: 30', '  resources: {cpu: 1, memory: 768Mi}', '  boot: {disk: root}',
  `  disks: [${disk}]`, ...extra, '',
].join('\n');

describe('VMs from image URLs with cloud-init (real libvirtd, QEMU, cloud-init)', function () {
  this.timeout(900_000);
  let tmp = '';
  let manifests = '';
  let statePath = '';
  let daemon: Daemon | undefined;
  let server: http.Server | undefined;
  let base = '';
  let image = '';
  let imageSha = '';
  let imageBytes = 0;
  const requests = new Map<string, number>();

  const put = (name: string, text: string): void => writeFileSync(path.join(manifests, `${name}.yaml`), text);
  const rows = (): Row[] => {
    const db = new StateDb(statePath, { readonly: true });
    try { return db.listObjects(); } finally { db.close(); }
  };
  const row = (name: string): Row | undefined => rows().find((r) => r.name === name);
  const cond = (name: string, type: string): Condition | undefined => row(name)?.status?.conditions?.find((c) => c.type === type);
  const consoleOf = (name: string): string => {
    const file = path.join(CONSOLE_DIR, `${name}.log`);
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  };
  const domainExists = async (name: string): Promise<boolean> => virsh('dominfo', name).then(() => true, () => false);
  const volumes = async (): Promise<string[]> =>
    (await virsh('vol-list', POOL).catch(() => '')).split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((v) => v.startsWith('vmimage-'));
  const seeds = (name: string): string[] => (existsSync(SEED_DIR) ? readdirSync(SEED_DIR).filter((f) => f.startsWith(`${name}-`)) : []);
  /** Nothing of `name` on the host: no domain, no volume, no seed. */
  const nothingMade = async (name: string): Promise<void> => {
    expect(await domainExists(name), `no domain ${name}`).to.equal(false);
    expect((await volumes()).filter((v) => v.startsWith(`${name}-`)), `no volume of ${name}`).to.deep.equal([]);
    expect(seeds(name), `no seed of ${name}`).to.deep.equal([]);
  };

  before(async function () {
    if (process.getuid?.() !== 0) throw new Error('the cloud-init e2e test needs root (libvirtd qemu:///system)');
    if (!existsSync('/run/libvirt/libvirt-sock')) throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    const built = Date.now();
    const { stdout } = await run('bash', [path.resolve('scripts/build-test-vm-image.sh')], { timeout: 1_800_000 });
    image = stdout.trim().split('\n').pop() ?? '';
    console.log(`      test VM image ${image} ready in ${((Date.now() - built) / 1000).toFixed(1)} s (built once, then cached)`);
    imageBytes = statSync(image).size;
    imageSha = createHash('sha256').update(readFileSync(image)).digest('hex');

    tmp = mkdtempSync(path.join(os.tmpdir(), 'hyperlet-vmimage-'));
    chmodSync(tmp, 0o711); // QEMU runs as libvirt-qemu: it must pass through to the cached base image
    for (const d of ['manifests', 'state', 'cache', 'secrets']) mkdirSync(path.join(tmp, d));
    manifests = path.join(tmp, 'manifests');
    statePath = path.join(tmp, 'state', 'state.db');
    writeFileSync(path.join(tmp, 'not-an-image.qcow2'), '<html><body>404 page that says 200</body></html>\n');
    writeFileSync(path.join(tmp, 'small.raw'), Buffer.alloc(1024 * 1024));
    // A qcow2 naming a backing file on the host: QEMU would open /etc/hostname through it.
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', '/etc/hostname', '-F', 'raw', path.join(tmp, 'chained.qcow2'), '1G']);

    server = http.createServer((req, res) => {
      const url = req.url ?? '/';
      requests.set(url, (requests.get(url) ?? 0) + 1);
      const pathname = new URL(url, 'http://127.0.0.1').pathname;
      if (pathname === '/img/debian.qcow2') {
        res.writeHead(200, { 'content-length': String(imageBytes) });
        createReadStream(image).pipe(res);
      } else if (pathname === '/img/truncated.qcow2') {
        // The full length announced, half sent, then the connection dropped.
        res.writeHead(200, { 'content-length': String(imageBytes) });
        const half = createReadStream(image, { end: Math.floor(imageBytes / 2) });
        half.on('end', () => res.socket?.destroy());
        half.pipe(res, { end: false });
      } else if (['/img/not-an-image.qcow2', '/img/small.raw', '/img/chained.qcow2'].includes(pathname)) {
        const body = readFileSync(path.join(tmp, path.basename(pathname)));
        res.writeHead(200, { 'content-length': String(body.length) }).end(body);
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    // An isolated network (no <forward>): the guest reaches only its bridge, and libvirt's dnsmasq leases it an address.
    const netXml = path.join(tmp, 'net.xml');
    writeFileSync(netXml, `<network><name>${NET}</name><bridge name="${BRIDGE}"/><ip address="${SUBNET}.1" netmask="255.255.255.0">`
      + `<dhcp><range start="${SUBNET}.10" end="${SUBNET}.99"/></dhcp></ip></network>`);
    await virsh('net-define', netXml);
    await virsh('net-start', NET);

    const hostPolicy: HostPolicy = { ...DEFAULT_HOST_POLICY, defaults: { ...DEFAULT_HOST_POLICY.defaults, imageHosts: ['127.0.0.1:*'] } };
    const disk = (url: string, size: string, sha?: string): string =>
      `{name: root, image: "${url}", size: ${size}, pool: ${POOL}${sha === undefined ? '' : `, sha256: "${sha}"`}}`;
    const userData = [
      '#cloud-config',
      'write_files:',
      '  - path: /etc/hyperlet-e2e',
      `    content: "written by cloud-init ${sfx}\\n"`,
      'runcmd:',
      '  - [sh, -c, \'echo "hyperlet-e2e: host=$(hostname) file=$(cat /etc/hyperlet-e2e) key=$(cat /home/debian/.ssh/authorized_keys)" > /dev/ttyS0\']',
    ];
    // The user-data comes from the host's secrets directory (userDataFrom: dir sources read files there).
    writeFileSync(path.join(tmp, 'secrets', 'user-data'), `${userData.join('\n')}\n`, { mode: 0o600 });
    put(n('deb'), vm(n('deb'), disk(`${base}/img/debian.qcow2`, '3Gi', imageSha), [
      `  networks: [{network: ${NET}}]`,
      '  cloudInit:',
      `    hostname: ci-${sfx}`,
      `    sshAuthorizedKeys: ["${SSH_KEY}"]`,
      '    userDataFrom: {file: user-data}',
    ]).replace('gracefulStopSeconds: 30', 'gracefulStopSeconds: 240'));
    put(n('uefi'), vm(n('uefi'), `{name: root, size: 1Gi, pool: ${POOL}}`).replace('boot: {disk: root}', 'boot: {disk: root, firmware: uefi}')
      .replace('memory: 768Mi', 'memory: 256Mi'));
    put(n('missing'), vm(n('missing'), disk(`${base}/img/nosuch.qcow2`, '2Gi')));
    put(n('badsum'), vm(n('badsum'), disk(`${base}/img/small.raw`, '2Gi', '0'.repeat(64))));
    put(n('cut'), vm(n('cut'), disk(`${base}/img/truncated.qcow2`, '2Gi')));
    put(n('notimg'), vm(n('notimg'), disk(`${base}/img/not-an-image.qcow2`, '2Gi')));
    put(n('chained'), vm(n('chained'), disk(`${base}/img/chained.qcow2`, '2Gi')));
    put(n('toobig'), vm(n('toobig'), disk(`${base}/img/debian.qcow2`, '1Gi', imageSha)));
    put(n('huge'), vm(n('huge'), disk(`${base}/img/debian.qcow2`, '3Gi', imageSha), [
      '  cloudInit:', `    userData: "${'x'.repeat(70_000)}"`,
    ]));
    daemon = new Daemon({
      sources: [{ type: 'dir', location: manifests }], statePath, lxcpath: path.join(tmp, 'lxc'), libvirtUri: 'qemu:///system',
      kinds: ['VirtualMachine'], node: 'e2e', nodeFilter: false, resyncMs: 2_000,
      concurrency: 4, qps: 100, burst: 100, shutdownTimeoutMs: 60_000, hostPolicy, imageCacheDir: path.join(tmp, 'cache'),
      secretsDir: path.join(tmp, 'secrets'),
    }, silentLogger());
    await daemon.start();
  });

  after(async () => {
    await daemon?.stop();
    await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
    for (const name of (await virsh('list', '--all', '--name').catch(() => '')).split('\n').map((l) => l.trim()).filter((l) => l.startsWith(`vmimage-${sfx}-`))) {
      await virsh('destroy', name).catch(() => undefined);
      await virsh('undefine', name, '--nvram').catch(() => undefined);
    }
    for (const v of await volumes()) await virsh('vol-delete', v, '--pool', POOL).catch(() => undefined);
    await virsh('pool-destroy', POOL).catch(() => undefined);
    await virsh('pool-undefine', POOL).catch(() => undefined);
    rmSync(path.join('/var/lib/hyperlet/pools', POOL), { recursive: true, force: true });
    await virsh('net-destroy', NET).catch(() => undefined);
    await virsh('net-undefine', NET).catch(() => undefined);
    for (const f of existsSync(SEED_DIR) ? readdirSync(SEED_DIR).filter((x) => x.startsWith(`vmimage-${sfx}-`)) : []) rmSync(path.join(SEED_DIR, f), { force: true });
    for (const f of existsSync(CONSOLE_DIR) ? readdirSync(CONSOLE_DIR).filter((x) => x.startsWith(`vmimage-${sfx}-`)) : []) rmSync(path.join(CONSOLE_DIR, f), { force: true });
    if (tmp !== '') rmSync(tmp, { recursive: true, force: true });
  });

  it('boots a Debian 12 VM from the image URL (BIOS, overlay on the cached base) and the real cloud-init applies the user-data', async () => {
    const started = Date.now();
    await until('the domain running', async () => ((await virsh('domstate', n('deb')).catch(() => '')).trim() === 'running' ? true : undefined), 300_000);
    const defined = Date.now();
    const xml = await virsh('dumpxml', n('deb'));
    expect(xml, 'boots from the disk, no kernel outside the image').to.not.include('<kernel>');
    expect(xml).to.include('org.qemu.guest_agent.0');
    expect(xml).to.match(/<disk type='file' device='cdrom'>[\s\S]*?<readonly\/>/);
    expect(requests.get('/img/debian.qcow2'), 'one download for every VM of that URL').to.equal(1);
    const vol = (await volumes()).find((v) => v.startsWith(`${n('deb')}-root-`)) ?? '';
    const info = JSON.parse((await run('qemu-img', ['info', '-U', '--output=json', (await virsh('vol-path', vol, '--pool', POOL)).trim()])).stdout) as Record<string, unknown>;
    expect(info.format).to.equal('qcow2');
    expect(info['virtual-size'], 'grown to the declared size').to.equal(3 * 1024 ** 3);
    expect(String(info['backing-filename']), 'an overlay on the cached download').to.include(path.join(tmp, 'cache', 'disks', 'downloads'));
    expect(info['backing-filename-format']).to.equal('qcow2');
    const iso = seeds(n('deb'));
    expect(iso).to.have.length(1);
    const label = (await run('blkid', ['-o', 'value', '-s', 'LABEL', path.join(SEED_DIR, iso[0] ?? '')])).stdout.trim();
    expect(label).to.equal('cidata');

    const line = await until('the runcmd line on the serial console', () => {
      const m = /hyperlet-e2e: host=(\S+) file=(.*?) key=(.*)$/m.exec(consoleOf(n('deb')));
      return m ?? undefined;
    }, 600_000, 2_000);
    console.log(`      domain running ${((defined - started) / 1000).toFixed(1)} s after the daemon started; `
      + `cloud-init's runcmd ran ${((Date.now() - defined) / 1000).toFixed(1)} s after that (systemd + cloud-init under TCG)`);
    expect(line[1], 'hostname from spec.cloudInit.hostname').to.equal(`ci-${sfx}`);
    expect(line[2], 'write_files from the user-data').to.equal(`written by cloud-init ${sfx}`);
    expect(line[3]?.trim(), 'the SSH key from sshAuthorizedKeys in the default user\'s authorized_keys').to.equal(SSH_KEY);
    expect(consoleOf(n('deb')), 'the NoCloud datasource was used').to.match(/Datasource DataSourceNoCloud/);
  });

  it('shows the DHCP lease of the test network in status.addresses, and the guest agent answers on its channel', async () => {
    const addresses = await until('an address in status', () => {
      const a = row(n('deb'))?.status?.addresses ?? [];
      return a.some((x) => x.startsWith(`${SUBNET}.`)) ? a : undefined;
    }, 300_000, 1_000);
    const leases = await virsh('net-dhcp-leases', NET);
    const ip = addresses.find((x) => x.startsWith(`${SUBNET}.`)) ?? '';
    expect(leases, 'the address is the lease libvirt gave').to.include(`${ip}/24`);
    const ping = await until('the guest agent', async () =>
      virsh('qemu-agent-command', n('deb'), '{"execute":"guest-ping"}').then((s) => s, () => undefined), 300_000, 2_000);
    expect(ping).to.include('return');
    const fromAgent = await virsh('domifaddr', n('deb'), '--source', 'agent');
    expect(fromAgent).to.include(ip);
  });

  it('never shows the user-data in status or the state DB', () => {
    const db = new StateDb(statePath, { readonly: true });
    try {
      expect(JSON.stringify(db.listObjects())).to.not.include(`written by cloud-init ${sfx}`);
    } finally {
      db.close();
    }
  });

  it('stops the VM gracefully (guest agent when it answers, ACPI otherwise): the guest powers itself off, no destroy', async () => {
    put(n('deb'), readFileSync(path.join(manifests, `${n('deb')}.yaml`), 'utf8').replace('spec:\n', 'spec:\n  state: Stopped\n'));
    const t0 = Date.now();
    await until('the domain shut off', async () => ((await virsh('domstate', n('deb')).catch(() => '')).trim() === 'shut off' ? true : undefined), 300_000, 500);
    console.log(`      guest shut down in ${((Date.now() - t0) / 1000).toFixed(1)} s under TCG`);
    expect((await virsh('domstate', '--reason', n('deb'))).trim(), 'powered off from inside, not destroyed').to.equal('shut off (shutdown)');
  });

  it('starts a VM with boot.firmware uefi on OVMF, and deletes it with its NVRAM', async () => {
    await until('the UEFI domain running', async () => ((await virsh('domstate', n('uefi')).catch(() => '')).trim() === 'running' ? true : undefined), 120_000);
    const xml = await virsh('dumpxml', n('uefi'));
    expect(xml).to.match(/<loader [^>]*type='pflash'[^>]*>\/usr\/share\/OVMF\/OVMF_CODE[^<]*\.fd<\/loader>/);
    const nvram = /<nvram[^>]*>([^<]+)<\/nvram>/.exec(xml)?.[1] ?? '';
    expect(existsSync(nvram), `the NVRAM ${nvram}`).to.equal(true);
    rmSync(path.join(manifests, `${n('uefi')}.yaml`));
    await until('the UEFI domain gone', async () => ((await domainExists(n('uefi'))) ? undefined : true), 120_000);
    expect(existsSync(nvram), 'the NVRAM goes with the domain').to.equal(false);
    await nothingMade(n('uefi'));
  });

  it('refuses an HTTP 404 with ImageNotFound and makes nothing', async () => {
    const ready = await until('404 refused', () => (cond(n('missing'), 'Ready')?.reason === 'ImageNotFound' ? cond(n('missing'), 'Ready') : undefined), 120_000);
    expect(ready?.message).to.include(`${base}/img/nosuch.qcow2: HTTP 404`);
    await nothingMade(n('missing'));
  });

  it('refuses a wrong sha256 with ImageChecksumMismatch and makes nothing', async () => {
    const ready = await until('bad sha refused', () => (cond(n('badsum'), 'Ready')?.reason === 'ImageChecksumMismatch' ? cond(n('badsum'), 'Ready') : undefined), 120_000);
    expect(ready?.message).to.include(`not the declared ${'0'.repeat(64)}`);
    await nothingMade(n('badsum'));
  });

  it('shows a download in status (Reconciling DownloadingImage with the bytes), never keeps a truncated one, retries it, and makes nothing', async () => {
    const progress = await until('the download in status', () => {
      const c = cond(n('cut'), 'Reconciling');
      return c?.status === 'True' && c.reason === 'DownloadingImage' ? c : undefined;
    }, 180_000, 20);
    expect(progress.message).to.match(new RegExp(`^Downloading image ${base}/img/truncated\\.qcow2: [0-9]+( of ${imageBytes})? bytes$`));
    await until('the truncated download retried', () => ((requests.get('/img/truncated.qcow2') ?? 0) >= 2 ? true : undefined), 180_000);
    const ready = cond(n('cut'), 'Ready');
    expect(ready?.status).to.equal('False');
    expect(readdirSync(path.join(tmp, 'cache', 'disks', 'downloads')).filter((f) => !f.startsWith('.')).length, 'only the good image is cached').to.equal(1);
    await nothingMade(n('cut'));
  });

  it('refuses a file that is no disk image with InvalidImage (qemu-img, never the name) and makes nothing', async () => {
    const ready = await until('not an image refused', () => (cond(n('notimg'), 'Ready')?.reason === 'InvalidImage' ? cond(n('notimg'), 'Ready') : undefined), 120_000);
    expect(ready?.message).to.include('it is no disk image');
    await nothingMade(n('notimg'));
  });

  it('refuses a downloaded qcow2 that names a backing file with InvalidImage, and makes nothing', async () => {
    const ready = await until('chained refused', () => (cond(n('chained'), 'Ready')?.reason === 'InvalidImage' ? cond(n('chained'), 'Ready') : undefined), 120_000);
    expect(ready?.message).to.include('names a backing file (/etc/hostname)');
    await nothingMade(n('chained'));
  });

  it('refuses an image larger than the declared disk size with ImageTooLarge and makes nothing', async () => {
    const ready = await until('too big refused', () => (cond(n('toobig'), 'Ready')?.reason === 'ImageTooLarge' ? cond(n('toobig'), 'Ready') : undefined), 120_000);
    expect(ready?.message).to.include('larger than the declared size 1Gi');
    await nothingMade(n('toobig'));
  });

  it('refuses a cloud-init payload over the limit at validation, naming the field and rule, and makes nothing', async () => {
    const problem = await until('the payload refused', () => {
      const db = new StateDb(statePath, { readonly: true });
      try {
        return db.problems().map((p) => p.problem).find((p) => p.name === n('huge') && p.path === 'spec.cloudInit.userData');
      } finally {
        db.close();
      }
    }, 60_000);
    expect(problem?.rule).to.equal('maxLength');
    expect(problem?.line, 'the user-data itself is never shown').to.not.include('xxxxxxxx');
    await nothingMade(n('huge'));
  });

  it('deletes the VM with its overlay volume and its seed, keeping the cached image', async () => {
    rmSync(path.join(manifests, `${n('deb')}.yaml`));
    await until('the domain gone', async () => ((await domainExists(n('deb'))) ? undefined : true), 120_000);
    await until('the volume gone', async () => ((await volumes()).some((v) => v.startsWith(`${n('deb')}-`)) ? undefined : true), 60_000);
    expect(seeds(n('deb'))).to.deep.equal([]);
    expect(readdirSync(path.join(tmp, 'cache', 'disks', 'downloads')).filter((f) => !f.startsWith('.'))).to.have.length(1);
  });
});
