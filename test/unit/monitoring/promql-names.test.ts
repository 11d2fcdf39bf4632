import { expect } from 'chai';
import { exposedMetricNames, grafanaQueries, promqlMetricNames } from '../../support/promql-names.js';

describe('promqlMetricNames', () => {
  const cases: Record<string, { reason: string; expr: string; want: string[] }> = {
    PlainSelector: {
      reason: 'a metric with label matchers is one name; the label values are not names',
      expr: 'hyperlet_object_ready{kind="Container", name=~"web.*"} == 0', want: ['hyperlet_object_ready'],
    },
    FunctionsAndRanges: {
      reason: 'function names and range durations are not metrics',
      expr: 'rate(hyperlet_reconcile_total[5m]) / rate(hyperlet_reconcile_errors_total[$__rate_interval])',
      want: ['hyperlet_reconcile_errors_total', 'hyperlet_reconcile_total'],
    },
    Aggregations: {
      reason: 'labels in by, on and group_left lists are not metrics',
      expr: 'histogram_quantile(0.95, sum by (le, controller) (rate(x_bucket[5m]))) * on (instance) group_left (node) hyperlet_node_info',
      want: ['hyperlet_node_info', 'x_bucket'],
    },
    KeywordsAndNumbers: {
      reason: 'set operators, bool, offset durations and numbers in exponent form are not metrics',
      expr: 'max_over_time(a[1h]) unless on (node) b offset 5m or vector(1e3) and c == bool 0',
      want: ['a', 'b', 'c'],
    },
    GrafanaVariables: {
      reason: 'Grafana variables and label_values arguments: only the metric counts',
      expr: 'label_values(hyperlet_node_info, instance)', want: ['hyperlet_node_info'],
    },
    StringsHidingBraces: {
      reason: 'braces and words inside strings neither end a matcher nor name a metric',
      expr: 'count_values("not_a_metric}", up{job="a}b"})', want: ['up'],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(promqlMetricNames(tc.expr), tc.reason).to.deep.equal(tc.want));
  }
});

describe('exposedMetricNames', () => {
  it('expands histogram and summary families and keeps sample names', () => {
    const text = [
      '# HELP h a histogram', '# TYPE h histogram', 'h_bucket{le="1"} 0',
      '# TYPE s summary', '# TYPE c counter', 'c_total 3', 'bare 1', '',
    ].join('\n');
    expect([...exposedMetricNames(text)].sort())
      .to.deep.equal(['bare', 'c', 'c_total', 'h', 'h_bucket', 'h_count', 'h_sum', 's', 's_count', 's_sum']);
  });
});

describe('grafanaQueries', () => {
  it('finds target, templating and annotation queries, not the datasource plugin id', () => {
    const dashboard = {
      panels: [{ targets: [{ expr: 'a' }] }, { type: 'row', panels: [{ targets: [{ expr: 'b', legendFormat: '{{x}}' }] }] }],
      templating: {
        list: [
          { type: 'datasource', query: 'prometheus' },
          { query: { query: 'label_values(c, instance)' }, definition: 'label_values(c, instance)' },
        ],
      },
      annotations: { list: [{ expr: 'ALERTS' }] },
    };
    expect(grafanaQueries(dashboard).sort()).to.deep.equal(['ALERTS', 'a', 'b', 'label_values(c, instance)', 'label_values(c, instance)']);
  });
});
