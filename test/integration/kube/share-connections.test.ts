import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { expect } from 'chai';
import { shareConnections } from '../../../src/kube/kube-client.js';

/** A loopback HTTPS server answering every GET with an empty Namespace, counting TLS connections. */
async function startServer(dir: string): Promise<{ server: Server; port: number; connections: () => number; requests: () => number }> {
  const openssl = (args: string[]): void => { execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' }); };
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=test-ca',
    '-keyout', 'ca.key', '-out', 'ca.crt']);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=localhost', '-keyout', 'srv.key', '-out', 'srv.csr']);
  writeFileSync(join(dir, 'srv.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  openssl(['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-out', 'srv.crt',
    '-extfile', 'srv.ext']);
  let connections = 0;
  let requests = 0;
  const server = createServer({ key: readFileSync(join(dir, 'srv.key')), cert: readFileSync(join(dir, 'srv.crt')) }, (req, res) => {
    requests++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }));
  });
  server.on('secureConnection', () => { connections++; });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, connections: () => connections, requests: () => requests };
}

describe('shareConnections', function () {
  this.timeout(30_000);
  let dir: string;
  let srv: Awaited<ReturnType<typeof startServer>>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hyperlet-throughput-tls-'));
    srv = await startServer(dir);
  });
  after(async () => {
    await new Promise((r) => srv.server.close(r));
    srv.server.closeAllConnections();
    rmSync(dir, { recursive: true, force: true });
  });

  const config = (caFile: string): KubeConfig => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `https://127.0.0.1:${srv.port}`, caData: readFileSync(caFile).toString('base64') }],
      users: [{ name: 'u', token: 'not-a-secret' }],
      contexts: [{ name: 'c', cluster: 'c', user: 'u' }],
      currentContext: 'c',
    });
    return kc;
  };

  const cases: Record<string, { reason: string; share: boolean; parallel: number; want: (connections: number) => boolean }> = {
    ClientNodeAlone: {
      reason: 'without it, client-node 1.4 opens a new TLS connection for every request (the cost this removes)',
      share: false, parallel: 1, want: (c) => c === 20,
    },
    SequentialRequestsShareOne: {
      reason: 'requests one after another reuse one kept-alive connection',
      share: true, parallel: 1, want: (c) => c === 1,
    },
    ParallelRequestsShareFew: {
      reason: 'four requests at a time open at most four connections, reused for the rest',
      share: true, parallel: 4, want: (c) => c >= 1 && c <= 4,
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const kc = config(join(dir, 'ca.crt'));
      if (tc.share) expect(shareConnections(kc), 'returns the same config').to.equal(kc);
      if (tc.share) shareConnections(kc); // idempotent: wrapping twice changes nothing
      const api = kc.makeApiClient(CoreV1Api);
      const connections0 = srv.connections();
      const requests0 = srv.requests();
      for (let i = 0; i < 20 / tc.parallel; i++) {
        const names = await Promise.all(Array.from({ length: tc.parallel }, () => api.readNamespace({ name: 'default' })));
        for (const ns of names) expect(ns.metadata?.name).to.equal('default');
      }
      expect(srv.requests() - requests0).to.equal(20);
      const opened = srv.connections() - connections0;
      expect(tc.want(opened), `${tc.reason}: ${opened} connections`).to.equal(true);
    });
  }

  it('still verifies the server: a config with another CA is refused', async () => {
    const otherDir = mkdtempSync(join(tmpdir(), 'hyperlet-throughput-ca-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
        '-subj', '/CN=other-ca', '-keyout', 'ca.key', '-out', 'ca.crt'], { cwd: otherDir, stdio: 'ignore' });
      const good = shareConnections(config(join(dir, 'ca.crt')));
      await good.makeApiClient(CoreV1Api).readNamespace({ name: 'default' });
      const bad = shareConnections(config(join(otherDir, 'ca.crt')));
      let failed: unknown;
      try {
        await bad.makeApiClient(CoreV1Api).readNamespace({ name: 'default' });
      } catch (err) {
        failed = err;
      }
      expect(String((failed as { cause?: unknown } | undefined)?.cause ?? failed)).to.match(/certificate|self.signed|verify/i);
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });
});
