/**
 * The tallied metrics must read, once scraped, exactly as prom-client's own Counter and
 * Histogram read after the same observations.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Histogram, Registry } from 'prom-client';
import { QueryTally, TalliedHistogram } from './metrics.ts';

const BUCKETS = [0.0001, 0.001, 0.01, 0.1];
const OBSERVED: Array<[string, number]> = [
  ['cluster', 0.00005],
  ['cluster', 0.0001],
  ['cluster', 0.0004],
  ['forward', 0.02],
  ['forward', 3],
  ['cluster', 0.1],
  ['cache', 0],
];

function registry(): Registry {
  const r = new Registry();
  r.setDefaultLabels({ daemon: 'dns' });
  return r;
}

test('a tallied histogram is exposed as prom-client exposes a Histogram with the same observations', async () => {
  const theirs = registry();
  const ours = registry();
  const h = new Histogram({ name: 'd_seconds', help: 'h', labelNames: ['source'], buckets: BUCKETS, registers: [theirs] });
  const t = new TalliedHistogram({ name: 'd_seconds', help: 'h', labelName: 'source', buckets: BUCKETS, registers: [ours] });
  for (const [source, v] of OBSERVED) {
    h.observe({ source }, v);
    t.observe(source, v);
  }
  assert.equal(await ours.metrics(), await theirs.metrics());
  // prom-client's JSON carries `exemplar: null` on bucket values (exemplars are off): the rest must match.
  const json = async (r: Registry): Promise<unknown> => JSON.parse(JSON.stringify(await r.getMetricsAsJSON(), (k, v: unknown) => (k === 'exemplar' ? undefined : v)));
  assert.deepEqual(await json(ours), await json(theirs));
  ours.resetMetrics();
  theirs.resetMetrics();
  assert.equal(await ours.metrics(), await theirs.metrics());
});

/** The exposition's lines, sorted: series come in another order (Prometheus does not mind). */
async function lines(r: Registry): Promise<string[]> {
  return (await r.metrics()).split('\n').sort();
}

test('a query tally reaches its counter when scraped, and only once', async () => {
  const theirs = registry();
  const ours = registry();
  const c = new Counter({ name: 'q_total', help: 'q', labelNames: ['proto', 'type', 'rcode', 'source'], registers: [theirs] });
  const tally = new QueryTally();
  new Counter({ name: 'q_total', help: 'q', labelNames: ['proto', 'type', 'rcode', 'source'], registers: [ours], collect() { tally.flush((labels, n) => this.inc(labels, n)); } });
  const queries: Array<[string, string, string, string]> = [
    ['udp', 'A', 'NOERROR', 'cluster'],
    ['udp', 'A', 'NOERROR', 'cluster'],
    ['udp', 'A', 'NXDOMAIN', 'cluster'],
    ['tcp', 'SRV', 'NOERROR', 'cluster'],
    ['udp', 'A', 'NOERROR', 'cache'],
  ];
  for (const [proto, type, rcode, source] of queries) {
    c.inc({ proto, type, rcode, source });
    tally.add(proto, type, rcode, source);
  }
  assert.deepEqual(await lines(ours), await lines(theirs));
  assert.deepEqual(await lines(ours), await lines(theirs), 'a second scrape adds nothing');
  tally.add('udp', 'A', 'NOERROR', 'cluster');
  c.inc({ proto: 'udp', type: 'A', rcode: 'NOERROR', source: 'cluster' });
  assert.deepEqual(await lines(ours), await lines(theirs));
});
