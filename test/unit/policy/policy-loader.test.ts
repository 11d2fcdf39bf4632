import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_HOST_POLICY, type HostPolicy, rulesFor } from '../../../src/policy/host-policy.js';
import { isPolicyFileError, loadPolicyFile, parsePolicy, policyProblemLine } from '../../../src/policy/policy-loader.js';

const HEAD = 'apiVersion: hyperlet.io/v1alpha1\nkind: HostPolicy\n';

interface Case {
  reason: string;
  text: string;
  /** The problems expected (path and rule), or a check of the parsed policy. */
  want: { path: string; rule: string }[] | ((p: HostPolicy) => void);
}

const cases: Record<string, Case> = {
  HeaderOnly: {
    reason: 'an empty policy is the built-in default',
    text: HEAD,
    want: (p) => {
      expect(p.defaults).to.deep.equal(DEFAULT_HOST_POLICY.defaults);
      expect(p.host).to.deep.equal(DEFAULT_HOST_POLICY.host);
    },
  },
  FullFile: {
    reason: 'every field, with quantities turned into bytes',
    text: `${HEAD}host: {idmap: {hostId: 200000, size: 65536}, reservedMemory: 1Gi}
defaults:
  paths: {images: [/srv/images], rootfs: [/srv/rootfs], backups: [/srv/backups]}
  templates: [busybox]
  imageHosts: ['127.0.0.1:*', images.example]
  allow: {adoption: true, orphan: true, privileged: false}
  bridges: [br0]
  networks: [lan]
  pools: [fast]
  quota: {objects: 5, cpu: 8, memory: 8Gi, disk: 100Gi}
  limits: {cpu: 4, memory: 4Gi, disk: 50Gi, gracefulStopSeconds: 120}
  containerMemory: 256Mi
`,
    want: (p) => {
      expect(p.host).to.deep.equal({ idmap: { hostId: 200000, size: 65536 }, reservedMemoryBytes: 2 ** 30 });
      expect(p.defaults).to.deep.equal({
        imageDirs: ['/srv/images'], rootfsDirs: ['/srv/rootfs'], backupDirs: ['/srv/backups'], templates: ['busybox'], imageHosts: ['127.0.0.1:*', 'images.example'], adoption: true, orphan: true, privileged: false,
        bridges: ['br0'], networks: ['lan'], pools: ['fast'],
        quota: { objects: 5, cpu: 8, memoryBytes: 8 * 2 ** 30, diskBytes: 100 * 2 ** 30 },
        limits: { cpu: 4, memoryBytes: 4 * 2 ** 30, diskBytes: 50 * 2 ** 30, gracefulStopSeconds: 120 },
        containerMemoryBytes: 256 * 2 ** 20,
      });
    },
  },
  PartialKeepsDefaults: {
    reason: 'what a file leaves out keeps its default, field by field',
    text: `${HEAD}defaults: {limits: {cpu: 2}, allow: {privileged: true}}\n`,
    want: (p) => {
      expect(p.defaults.limits).to.deep.equal({ cpu: 2, gracefulStopSeconds: 600 });
      expect(p.defaults.privileged).to.equal(true);
      expect(p.defaults.adoption).to.equal(false);
      expect(p.defaults.imageDirs).to.deep.equal(DEFAULT_HOST_POLICY.defaults.imageDirs);
    },
  },
  Scopes: {
    reason: 'scopes apply by source and namespace, later entries over earlier ones',
    text: `${HEAD}scopes:
  - {source: git, allow: {privileged: true}, templates: [busybox]}
  - {source: "git*", namespace: "team-*", allow: {adoption: true}, quota: {objects: 3}}
  - {namespace: team-b, allow: {privileged: false}}
`,
    want: (p) => {
      expect(rulesFor(p, 'dir', 'default').privileged, 'dir is untouched').to.equal(false);
      expect(rulesFor(p, 'git', 'default')).to.deep.include({ privileged: true, adoption: false, templates: ['busybox'] });
      expect(rulesFor(p, 'git-2', 'team-a')).to.deep.include({ privileged: false, adoption: true, quota: { objects: 3 } });
      expect(rulesFor(p, 'git', 'team-a')).to.deep.include({ privileged: true, adoption: true });
      expect(rulesFor(p, 'git', 'team-b')).to.deep.include({ privileged: false, adoption: true });
    },
  },
  WrongKind: { reason: 'an object file is not a policy', text: 'apiVersion: hyperlet.io/v1alpha1\nkind: Container\n', want: [{ path: 'kind', rule: 'const' }] },
  NoHeader: { reason: 'apiVersion and kind are required', text: 'defaults: {}\n', want: [{ path: 'apiVersion', rule: 'required' }, { path: 'kind', rule: 'required' }] },
  UnknownField: { reason: 'a typo is not silently dropped (it could be a rule the operator believes in)', text: `${HEAD}defaults: {allow: {privilged: true}}\n`, want: [{ path: 'defaults.allow.privilged', rule: 'unknown-field' }] },
  RelativeDir: { reason: 'directories are absolute', text: `${HEAD}defaults: {paths: {images: [srv/images]}}\n`, want: [{ path: 'defaults.paths.images[0]', rule: 'pattern' }] },
  DotDotDir: { reason: 'no .. in a directory', text: `${HEAD}defaults: {paths: {rootfs: [/srv/../etc]}}\n`, want: [{ path: 'defaults.paths.rootfs[0]', rule: 'pattern' }] },
  TrailingSlash: { reason: 'one spelling per directory', text: `${HEAD}defaults: {paths: {rootfs: [/srv/]}}\n`, want: [{ path: 'defaults.paths.rootfs[0]', rule: 'pattern' }] },
  BadTemplateName: { reason: 'names and globs only', text: `${HEAD}defaults: {templates: ["busybox; rm"]}\n`, want: [{ path: 'defaults.templates[0]', rule: 'pattern' }] },
  HugeQuantity: { reason: 'a byte count that is not a safe integer', text: `${HEAD}defaults: {quota: {memory: 1e30}}\n`, want: [{ path: 'defaults.quota.memory', rule: 'quantity' }] },
  HugeQuantityString: { reason: 'a well-formed quantity past 2^53 - 1', text: `${HEAD}defaults: {containerMemory: 99999999999Ei}\n`, want: [{ path: 'defaults.containerMemory', rule: 'safe-integer' }] },
  NegativeCount: { reason: 'counts are not negative', text: `${HEAD}scopes: [{quota: {objects: -1}}]\n`, want: [{ path: 'scopes[0].quota.objects', rule: 'minimum' }] },
  GracefulOverSchema: { reason: 'the cap cannot exceed the schema\'s 3600', text: `${HEAD}defaults: {limits: {gracefulStopSeconds: 7200}}\n`, want: [{ path: 'defaults.limits.gracefulStopSeconds', rule: 'maximum' }] },
  IdmapLow: { reason: 'the range must lie above host users\' ids', text: `${HEAD}host: {idmap: {hostId: 1000, size: 65536}}\n`, want: [{ path: 'host.idmap.hostId', rule: 'minimum' }] },
  IdmapOverflow: { reason: 'the range must fit in 32 bits', text: `${HEAD}host: {idmap: {hostId: 4294000000, size: 1000000}}\n`, want: [{ path: 'host.idmap', rule: 'range' }] },
  TwoDocuments: { reason: 'one policy per file', text: `${HEAD}---\n${HEAD}`, want: [{ path: '', rule: 'one-document' }] },
  BrokenYaml: { reason: 'YAML errors say where', text: `${HEAD}defaults: [\n`, want: [{ path: '', rule: 'yaml' }] },
  NotAMapping: { reason: 'a list is not a policy', text: '- a\n', want: [{ path: '', rule: 'mapping' }] },
};

describe('parsePolicy', () => {
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const r = parsePolicy('/etc/hyperlet/policy.yaml', tc.text);
      if (typeof tc.want === 'function') {
        expect(r.ok, `${tc.reason}: ${JSON.stringify(r.ok ? '' : r.problems)}`).to.equal(true);
        if (r.ok) tc.want(r.policy);
        return;
      }
      expect(r.ok, tc.reason).to.equal(false);
      if (r.ok) return;
      expect(r.problems.map((p) => ({ path: p.path, rule: p.rule })), tc.reason).to.deep.include.members(tc.want);
      for (const p of r.problems) expect(policyProblemLine(p), 'every line names the file').to.match(/^\/etc\/hyperlet\/policy\.yaml: /);
    });
  }
});

describe('loadPolicyFile', () => {
  let dir = '';
  before(() => { dir = mkdtempSync(join(tmpdir(), 'hyperlet-policy-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a file and names it in the policy', async () => {
    writeFileSync(join(dir, 'ok.yaml'), `${HEAD}defaults: {templates: [busybox]}\n`);
    const p = await loadPolicyFile(join(dir, 'ok.yaml'));
    expect(p.file).to.equal(join(dir, 'ok.yaml'));
    expect(p.defaults.templates).to.deep.equal(['busybox']);
  });

  it('throws PolicyFileError naming the file, the field and the rule', async () => {
    writeFileSync(join(dir, 'bad.yaml'), `${HEAD}defaults: {allow: {privileged: yes}}\n`);
    const err = await loadPolicyFile(join(dir, 'bad.yaml')).then(() => undefined, (e: unknown) => e);
    expect(isPolicyFileError(err)).to.equal(true);
    expect((err as Error).message).to.include(`${join(dir, 'bad.yaml')}: defaults.allow.privileged: must be boolean (type)`);
  });

  it('says so when the file cannot be read', async () => {
    const err = await loadPolicyFile(join(dir, 'missing.yaml')).then(() => undefined, (e: unknown) => e);
    expect(isPolicyFileError(err) && err.problems[0]?.rule).to.equal('readable');
  });
});
