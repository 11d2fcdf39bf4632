/**
 * LibvirtProvider's own logic with a FakeLibvirtClient where the RPC client would talk to
 * libvirtd: the provider contract in milliseconds, and what it must make of libvirtd's answers
 * (a missing pool, a refused define, a live memory change). Against the real daemon:
 * test/e2e/libvirt-contract.e2e.ts and libvirt-provider.e2e.ts.
 */
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import pino from 'pino';
import type { VirtualMachine } from '../../../../src/api/v1alpha1/types.js';
import { validateObject } from '../../../../src/api/v1alpha1/validate.js';
import { parseDomainXml } from '../../../../src/providers/libvirt/domain-xml.js';
import { DomainState, Flags, LifecycleEventType } from '../../../../src/providers/libvirt/libvirt-client.js';
import { LibvirtError, LibvirtErrorCode } from '../../../../src/providers/libvirt/libvirt-error.js';
import { LibvirtProvider } from '../../../../src/providers/libvirt/libvirt-provider.js';
import { isTerminalError } from '../../../../src/shared/errors.js';
import { type Desired, hostNameOf, specHashOf } from '../../../../src/store/desired.js';
import { objectKey } from '../../../../src/store/object-key.js';
import { describeProviderContract } from '../../../conformance/provider-contract.js';
import { FakeLibvirtClient } from '../../../fakes/fake-libvirt-client.js';

const logger = pino({ level: 'silent' });
const signal = (): AbortSignal => AbortSignal.timeout(10_000);
const POOL = 'hyperlet-unit';

/** A VirtualMachine named `name` with one 100 MiB disk in `pool`, stopped by destroy at once; a fresh id each call. */
function vm(name: string, spec: Record<string, unknown> = {}, pool = POOL): Desired<'VirtualMachine'> {
  const result = validateObject({
    apiVersion: 'hyperlet.io/v1alpha1', kind: 'VirtualMachine', metadata: { name, namespace: 'default' },
    spec: {
      hypervisor: 'qemu', resources: { cpu: 1, memory: '64Mi' }, gracefulStopSeconds: 0,
      disks: [{ name: 'data', pool, size: '100Mi' }], ...spec,
    },
  });
  if (!result.ok) throw new Error(`test object invalid: ${JSON.stringify(result.issues)}`);
  const object = result.object as VirtualMachine;
  return {
    key: objectKey('dir', 'default', 'VirtualMachine', name), source: 'dir', object, id: randomUUID(), generation: 1,
    specHash: specHashOf(object.spec), hostName: hostNameOf(object),
  };
}

/** A domain as an operator would define it: no hyperlet marker, no disk. */
function strangerXml(name: string): string {
  return `<domain type="qemu"><name>${name}</name><memory unit="KiB">65536</memory><os><type arch="x86_64">hvm</type></os></domain>`;
}

/** Volumes in the fake's pool that belong to `hostName` by name. */
function volumesOf(fake: FakeLibvirtClient, hostName: string): string[] {
  return [...(fake.pools.get(POOL)?.volumes.keys() ?? [])].filter((v) => v.startsWith(`${hostName}-`));
}

describe('LibvirtProvider (FakeLibvirtClient)', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hyperlet-unit-libvirt-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const makeProvider = (fake: FakeLibvirtClient): LibvirtProvider =>
    new LibvirtProvider({ logger, client: fake, consoleDir: join(dir, 'console'), poolRoot: join(dir, 'pools') });

  describe('the provider contract', () => {
    const fake = new FakeLibvirtClient();
    /** Runs create on the fake with `method`'s call number `after + 1` failing: a hyperlet killed right before it. */
    const cutBefore = async (
      provider: LibvirtProvider, d: Desired<'VirtualMachine'>, method: 'storageVolCreateXml' | 'domainDefineXml', after: number,
    ): Promise<void> => {
      fake.failNext(method, new Error(`killed before ${method}`), after);
      await provider.create(d, signal()).then(() => { throw new Error('create went through'); }, () => undefined);
    };
    describeProviderContract('LibvirtProvider on a FakeLibvirtClient', () => makeProvider(fake), (label) => vm(`unit-${label}`), {
      holdState: 'Paused',
      createUnowned: async (_provider, d) => {
        await fake.domainDefineXml(strangerXml(d.hostName));
      },
      removeUnowned: async (_provider, d) => {
        fake.domains.delete(d.hostName);
      },
      fingerprint: async (_provider, d) => ({
        domain: structuredClone(fake.domains.get(d.hostName)), volumes: volumesOf(fake, d.hostName),
      }),
      killedCreates: {
        'a domain defined without its volume': {
          seen: 'partial', leave: (provider, d) => cutBefore(provider, d, 'storageVolCreateXml', 0),
        },
        'its volume made, the domain still marked partial': {
          seen: 'partial', leave: (provider, d) => cutBefore(provider, d, 'domainDefineXml', 1),
        },
        'a volume of its own left without a domain': {
          seen: 'nothing',
          leave: async (provider, d) => {
            await cutBefore(provider, d, 'domainDefineXml', 1);
            fake.domains.delete(d.hostName);
          },
        },
      },
      leftovers: async (_provider, d) => [...(fake.domains.has(d.hostName) ? [d.hostName] : []), ...volumesOf(fake, d.hostName)],
      stopBehindBack: async (_provider, d) => {
        const domain = fake.domains.get(d.hostName);
        if (domain === undefined) throw new Error(`cannot stop ${d.hostName}: no such domain`);
        domain.state = DomainState.Shutoff;
        fake.emitLifecycle(d.hostName, LifecycleEventType.Stopped);
      },
      changeWithinMs: 1_000,
    });
  });

  describe('what it makes of libvirtd', () => {
    let fake: FakeLibvirtClient;
    let provider: LibvirtProvider;

    beforeEach(() => {
      fake = new FakeLibvirtClient();
      provider = makeProvider(fake);
    });

    afterEach(async () => {
      await provider.close();
    });

    it('boot.firmware uefi on a host without OVMF is TerminalError FirmwareNotInstalled, and nothing is defined or written', async () => {
      const noOvmf = new LibvirtProvider({
        logger, client: fake, consoleDir: join(dir, 'console'), poolRoot: join(dir, 'pools'), ovmfDir: join(dir, 'no-ovmf'), seedDir: join(dir, 'seeds-uefi'),
      });
      const d = vm('uefi', { boot: { disk: 'data', firmware: 'uefi' }, cloudInit: { hostname: 'u' } });
      const err = await noOvmf.create(d, signal()).then(() => undefined, (e: unknown) => e);
      expect(isTerminalError(err) && err.reason).to.equal('FirmwareNotInstalled');
      expect((err as Error).message).to.include('install the Debian package ovmf');
      expect(fake.callsOf('domainDefineXml')).to.deep.equal([]);
      expect(fake.callsOf('storageVolCreateXml')).to.deep.equal([]);
      expect(existsSync(join(dir, 'seeds-uefi'))).to.equal(false);
    });

    it('a disk in a missing pool it may not create is TerminalError PoolNotFound, and nothing is defined', async () => {
      const d = vm('nopool', {}, 'operators-pool');
      const err = await provider.create(d, signal()).then(() => undefined, (e: unknown) => e);
      expect(isTerminalError(err) && err.reason).to.equal('PoolNotFound');
      expect(fake.callsOf('domainDefineXml'), 'checked before anything is defined').to.deep.equal([]);
      expect(fake.callsOf('storagePoolDefineXml'), 'an operator\'s pool is never made').to.deep.equal([]);
      expect(await provider.observe(d, signal())).to.equal(undefined);
    });

    it('makes a missing pool named hyperlet-* as a dir pool, started and autostarted', async () => {
      await provider.create(vm('pool'), signal());
      expect(fake.pools.get(POOL)?.active).to.equal(true);
      expect(fake.callsOf('storagePoolDefineXml')[0]?.[0]).to.include(`<path>${join(dir, 'pools', POOL)}</path>`);
      expect(fake.callsOf('storagePoolSetAutostart').map((args) => args[1])).to.deep.equal([true]);
    });

    it('a define libvirtd refuses fails with libvirtd\'s own words', async () => {
      fake.failNext('domainDefineXml', new LibvirtError('XML error: Invalid value for attribute \'unit\'', LibvirtErrorCode.XmlError, 27));
      const err = await provider.create(vm('badxml'), signal()).then(() => undefined, (e: unknown) => e as Error);
      expect(err?.message).to.equal('XML error: Invalid value for attribute \'unit\'');
    });

    it('a domain without hyperlet\'s marker is never redefined, started or undefined', async () => {
      const d = vm('stranger');
      await fake.domainDefineXml(strangerXml(d.hostName));
      fake.calls.length = 0;
      const o = (await provider.observe(d, signal()))!;
      for (const attempt of [() => provider.create(d, signal()), () => provider.setState(d, 'Running', o, signal())]) {
        const err = await attempt().then(() => undefined, (e: unknown) => e);
        expect(isTerminalError(err) && err.reason).to.equal('NotOwned');
      }
      await provider.delete(d, signal());
      const changing = ['domainDefineXml', 'domainCreate', 'domainDestroy', 'domainUndefine', 'domainSetMetadata', 'storageVolDelete'];
      expect(fake.calls.filter((c) => changing.includes(c.method))).to.deep.equal([]);
    });

    it('sets memory of a running domain live, in KiB, and defines the new size', async () => {
      const d = vm('mem', { resources: { cpu: 1, memory: '128Mi', maxMemory: '256Mi' } });
      await provider.create(d, signal());
      await provider.setState(d, 'Running', (await provider.observe(d, signal()))!, signal());
      const next = { ...vm('mem', { resources: { cpu: 1, memory: '192Mi', maxMemory: '256Mi' } }), id: d.id };
      const o = (await provider.observe(next, signal()))!;
      fake.calls.length = 0;
      await provider.update(next, [{ path: 'resources.memory', from: 128 * 2 ** 20, to: 192 * 2 ** 20, apply: 'live' }], o, signal());
      const [dom, kib, flags] = fake.callsOf('domainSetMemory')[0] ?? [];
      expect([(dom as { name?: string } | undefined)?.name, kib, flags]).to.deep.equal([d.hostName, 196_608, Flags.AffectLive]);
      const defined = fake.callsOf('domainDefineXml').map(([xml]) => parseDomainXml(xml as string));
      expect(defined.map((p) => p.memoryBytes), 'the persistent definition has it too').to.deep.equal([192 * 2 ** 20]);
    });

    it('stops with destroy at once when gracefulStopSeconds is 0, and says so', async () => {
      const d = vm('stop');
      await provider.create(d, signal());
      await provider.setState(d, 'Running', (await provider.observe(d, signal()))!, signal());
      const note = await provider.setState(d, 'Stopped', (await provider.observe(d, signal()))!, signal());
      expect(note).to.equal('destroyed at once (gracefulStopSeconds is 0)');
      expect(fake.callsOf('domainShutdown'), 'no ACPI request').to.deep.equal([]);
      expect(fake.callsOf('domainDestroy').length).to.equal(1);
    });

    describe('requestStop and forceStop (a stop no worker waits for)', () => {
      const cases: Record<string, {
        reason: string; start: 'running' | 'paused' | 'off'; obeysAcpi: boolean; call: 'requestStop' | 'forceStop';
        wantCalls: string[]; wantState: number; wantNote?: string;
      }> = {
        RequestPressesOnceAndReturns: {
          reason: 'one ACPI press, no destroy, no wait: a guest deaf to ACPI keeps running',
          start: 'running', obeysAcpi: false, call: 'requestStop', wantCalls: ['domainShutdown'], wantState: DomainState.Running,
        },
        RequestOnObeyingGuest: {
          reason: 'a guest that hears the button powers off',
          start: 'running', obeysAcpi: true, call: 'requestStop', wantCalls: ['domainShutdown'], wantState: DomainState.Shutoff,
        },
        RequestResumesPausedFirst: {
          reason: 'a paused guest cannot see the button: resumed, then pressed',
          start: 'paused', obeysAcpi: false, call: 'requestStop', wantCalls: ['domainResume', 'domainShutdown'], wantState: DomainState.Running,
        },
        RequestOnShutOffDoesNothing: {
          reason: 'already off: nothing pressed',
          start: 'off', obeysAcpi: false, call: 'requestStop', wantCalls: [], wantState: DomainState.Shutoff,
        },
        ForceDestroys: {
          reason: 'the grace is over: destroy, and the note says so',
          start: 'running', obeysAcpi: false, call: 'forceStop', wantCalls: ['domainDestroy'], wantState: DomainState.Shutoff,
          wantNote: 'destroyed after 20 s: the guest did not power off on ACPI shutdown',
        },
        ForceOnShutOffDoesNothing: {
          reason: 'powered off on its own just before the deadline: nothing to destroy',
          start: 'off', obeysAcpi: false, call: 'forceStop', wantCalls: [], wantState: DomainState.Shutoff,
        },
      };
      for (const [name, tc] of Object.entries(cases)) {
        it(name, async () => {
          const d = vm(`stop-${name.toLowerCase()}`, { gracefulStopSeconds: 20 });
          await provider.create(d, signal());
          if (tc.start !== 'off') await provider.setState(d, tc.start === 'running' ? 'Running' : 'Paused', (await provider.observe(d, signal()))!, signal());
          fake.obeysAcpi = tc.obeysAcpi;
          fake.calls.length = 0;
          const note = await provider[tc.call](d, (await provider.observe(d, signal()))!, signal());
          const changing = ['domainShutdown', 'domainDestroy', 'domainResume', 'domainCreate'];
          const calls = fake.calls.map((c) => c.method).filter((m) => changing.includes(m));
          expect({ calls, state: fake.domains.get(d.hostName)?.state, note }, tc.reason)
            .to.deep.equal({ calls: tc.wantCalls, state: tc.wantState, note: tc.wantNote });
          // Both flags: libvirt asks the guest agent first and presses ACPI when no agent answers.
          for (const args of fake.callsOf('domainShutdown')) expect(args[1], 'agent first, ACPI otherwise').to.equal(Flags.ShutdownAcpi | Flags.ShutdownGuestAgent);
        });
      }
    });

    it('names every known domain in changes() after a reconnect, since events were lost meanwhile', async () => {
      const a = vm('known-a');
      const b = vm('known-b');
      await provider.create(a, signal());
      await provider.create(b, signal());
      await provider.observeAll(signal());
      const stop = new AbortController();
      const seen = new Set<string>();
      let wake: (() => void) | undefined;
      const reading = (async () => {
        for await (const name of provider.changes(stop.signal)) {
          seen.add(name);
          wake?.();
        }
      })();
      await new Promise<void>((r) => setImmediate(r)); // the stream subscribes on its first read
      fake.emit('reconnected');
      while (seen.size < 2) await new Promise<void>((r) => { wake = r; });
      expect([...seen].sort()).to.deep.equal([a.hostName, b.hostName].sort());
      stop.abort();
      await reading;
    });
  });
});
