/**
 * The metric names a PromQL expression reads, and the metric names a Prometheus text exposition
 * declares: enough to check that dashboards and alert rules query what the daemon exports.
 *
 * Caveats: a tokenizer, not a parser. It drops strings, label matchers, ranges, Grafana
 * variables and the label lists of by/without/on/ignoring/group_*; what is left that is not a
 * keyword, a number or a function name is a metric name. Good for the queries we write; a query
 * it misreads makes the test fail loudly (an unknown "metric"), never pass silently.
 */

const KEYWORDS = new Set([
  'and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'inf', 'nan', 'atan2',
]);

/** Metric names read by `expr` (PromQL, possibly with Grafana variables such as $__rate_interval). */
export function promqlMetricNames(expr: string): string[] {
  let s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\$\{[^}]*\}|\$[A-Za-z_]\w*/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  // label_values(metric, label) (Grafana): the second argument is a label.
  s = s.replace(/\blabel_values\s*\(\s*([A-Za-z_:][\w:]*)\s*,\s*[A-Za-z_]\w*\s*\)/g, ' $1 ');
  const names = new Set<string>();
  for (const m of s.matchAll(/([A-Za-z_:][\w:]*)(\s*\()?/g)) {
    const [, name, call] = m;
    if (name === undefined || call !== undefined || KEYWORDS.has(name.toLowerCase())) continue;
    const before = s[(m.index ?? 0) - 1];
    if (before !== undefined && /[\w.]/.test(before)) continue; // the tail of a number such as 1e3 or 5m
    names.add(name);
  }
  return [...names].sort();
}

/** Every sample name a Prometheus text exposition can yield: families from # TYPE with their suffixes, and sample lines. */
export function exposedMetricNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type !== null) {
      const [, name = '', kind] = type;
      names.add(name);
      if (kind === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
      if (kind === 'summary') for (const suffix of ['_sum', '_count']) names.add(name + suffix);
      continue;
    }
    const sample = /^([A-Za-z_:][\w:]*)[{ ]/.exec(line);
    if (sample?.[1] !== undefined) names.add(sample[1]);
  }
  return names;
}

/** Names of samples actually present (not only declared) in an exposition. */
export function sampledMetricNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const sample = /^([A-Za-z_:][\w:]*)[{ ]/.exec(line);
    if (sample?.[1] !== undefined) names.add(sample[1]);
  }
  return names;
}

/** Every `expr` in a Grafana dashboard (panel targets, nested rows, templating queries, annotations). */
export function grafanaQueries(dashboard: unknown): string[] {
  const out: string[] = [];
  const walk = (v: unknown, key: string | undefined): void => {
    if (typeof v === 'string') {
      if (key === 'expr' || key === 'query' || key === 'definition') out.push(v);
      return;
    }
    if (Array.isArray(v)) for (const item of v) walk(item, key);
    else if (v !== null && typeof v === 'object') for (const [k, item] of Object.entries(v)) walk(item, k);
  };
  walk(dashboard, undefined);
  // A datasource variable's query is a plugin id, not PromQL.
  return out.filter((q) => q !== 'prometheus');
}

/** Every `expr` in a Prometheus rules file (`groups[].rules[].expr`). */
export function ruleQueries(rules: { groups: { rules: { expr: string }[] }[] }): string[] {
  return rules.groups.flatMap((g) => g.rules.map((r) => r.expr));
}
