import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import { DEFAULT_HOST_POLICY } from '../../../src/policy/host-policy.js';
import { parsePolicy } from '../../../src/policy/policy-loader.js';

describe('manifests/25-policy.yaml', () => {
  it('holds a valid host policy equal to the built-in defaults, mounted where the DaemonSet reads it', () => {
    const configMap = yaml.load(readFileSync('manifests/25-policy.yaml', 'utf8')) as { data: Record<string, string> };
    const parsed = parsePolicy('manifests/25-policy.yaml', configMap.data['policy.yaml'] ?? '');
    expect(parsed.ok, JSON.stringify(parsed.ok ? '' : parsed.problems)).to.equal(true);
    if (!parsed.ok) return;
    expect({ host: parsed.policy.host, defaults: parsed.policy.defaults, scopes: parsed.policy.scopes })
      .to.deep.equal({ host: DEFAULT_HOST_POLICY.host, defaults: DEFAULT_HOST_POLICY.defaults, scopes: [] });
    const daemonSet = readFileSync('manifests/30-daemonset.yaml', 'utf8');
    expect(daemonSet).to.include('"--policy", "/etc/hyperlet/policy.yaml"');
    expect(daemonSet).to.include('{ name: policy, configMap: { name: hyperlet-policy } }');
  });
});
