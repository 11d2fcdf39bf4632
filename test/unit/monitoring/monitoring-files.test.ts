/**
 * The shipped monitoring files hang together: the PrometheusRule carries exactly the plain rules
 * file's groups, every alert has a severity and a summary, and the Grafana dashboard is well formed
 * (unique panel ids, every panel on the templated data source, every query reading some metric).
 * promtool and a running daemon check the rest (test/e2e/monitoring.e2e.ts).
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import { grafanaQueries, promqlMetricNames } from '../../support/promql-names.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const read = (path: string): string => readFileSync(join(repoRoot, path), 'utf8');

interface Rule { alert?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
interface Panel {
  id: number;
  type: string;
  datasource?: { uid: string };
  targets?: { expr: string; datasource?: { uid: string } }[];
  panels?: Panel[];
}

describe('monitoring files', () => {
  const rules = yaml.load(read('monitoring/hyperlet-rules.yaml')) as { groups: { name: string; rules: Rule[] }[] };
  const operatorRule = yaml.load(read('manifests/monitoring/prometheusrule.yaml')) as { kind: string; spec: { groups: unknown } };
  const dashboard = JSON.parse(read('monitoring/grafana-dashboard.json')) as { uid: string; panels: Panel[] };

  it('the PrometheusRule holds exactly the groups of the plain rules file', () => {
    expect(operatorRule.kind).to.equal('PrometheusRule');
    expect(operatorRule.spec.groups).to.deep.equal(rules.groups);
  });

  it('every alert says how bad it is and what happened, and waits before firing', () => {
    const alerts = rules.groups.flatMap((g) => g.rules);
    expect(alerts.map((r) => r.alert)).to.include.members([
      'HyperletObjectNotReady', 'HyperletReconcileErrorRateHigh', 'HyperletWorkQueueGrowing', 'HyperletProviderUnavailable',
      'HyperletSourceStuckOnOldRevision', 'HyperletNodeLost',
    ]);
    for (const r of alerts) {
      expect(['critical', 'warning', 'info'], `${r.alert} severity`).to.include(r.labels?.severity);
      expect(r.annotations?.summary, `${r.alert} summary`).to.be.a('string').and.not.equal('');
      expect(r.for, `${r.alert} for`).to.match(/^[0-9]+[smh]$/);
    }
  });

  it('the dashboard has unique panel ids, uses the data source variable, and each query reads a metric', () => {
    const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size, 'unique ids').to.equal(ids.length);
    for (const p of panels.filter((x) => x.type !== 'row')) {
      expect(p.datasource?.uid, `panel ${p.id} data source`).to.equal('${datasource}');
      expect(p.targets ?? [], `panel ${p.id} targets`).to.not.be.empty;
      for (const t of p.targets ?? []) expect(t.datasource?.uid, `panel ${p.id} target data source`).to.equal('${datasource}');
    }
    for (const q of grafanaQueries(dashboard)) expect(promqlMetricNames(q), q).to.not.be.empty;
  });
});
