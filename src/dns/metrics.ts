/**
 * Per-query metrics that cost next to nothing per query.
 *
 * Why not prom-client's own Counter and Histogram directly: `inc(labels)` and
 * `observe(labels, v)` build a hash string from the label object and look it up on every
 * call. At a hundred thousand queries a second that cost more than answering a query from the
 * reply cache, and its garbage brought the young-generation collections (and the latency
 * spikes they cause) a third closer together. Here a query is counted in plain maps and typed
 * arrays, keyed by label values the handler reuses (so no string is built or hashed anew),
 * and prom-client reads the totals when it is scraped: the counter through its `collect`
 * hook, the histogram as a metric object of prom-client's own shape (what `get()` of its
 * Histogram returns), so the exposition is the same text prom-client would write.
 */
import type { Metric, Registry } from 'prom-client';

/** One line of the exposition, as prom-client's metrics hand them to its registry. */
interface Value {
  labels: Record<string, string | number>;
  sharedLabels?: Record<string, string>;
  value: number;
  metricName: string;
}

/** What prom-client's registry reads from a metric (the runtime shape of its MetricObject). */
interface MetricData {
  name: string;
  help: string;
  type: 'histogram';
  aggregator: 'sum';
  values: Value[];
}

export interface QueryLabels {
  proto: string;
  type: string;
  rcode: string;
  source: string;
}

/** Query counts by label values, handed to a counter when it is scraped. */
export class QueryTally {
  /** proto → type → rcode → source → queries not yet handed over */
  readonly #pending = new Map<string, Map<string, Map<string, Map<string, number>>>>();

  add(proto: string, type: string, rcode: string, source: string): void {
    let byType = this.#pending.get(proto);
    if (!byType) this.#pending.set(proto, (byType = new Map()));
    let byRcode = byType.get(type);
    if (!byRcode) byType.set(type, (byRcode = new Map()));
    let bySource = byRcode.get(rcode);
    if (!bySource) byRcode.set(rcode, (bySource = new Map()));
    bySource.set(source, (bySource.get(source) ?? 0) + 1);
  }

  /** Hands every pending count to `inc` (a Counter's, in its collect hook) and starts again from zero. */
  flush(inc: (labels: QueryLabels, n: number) => void): void {
    for (const [proto, byType] of this.#pending) {
      for (const [type, byRcode] of byType) {
        for (const [rcode, bySource] of byRcode) {
          for (const [source, n] of bySource) {
            if (n > 0) inc({ proto, type, rcode, source }, n);
            bySource.set(source, 0);
          }
        }
      }
    }
  }
}

interface Series {
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  counts: Float64Array;
  sum: number;
  count: number;
  labels: Record<string, string>;
}

export interface TalliedHistogramOptions {
  name: string;
  help: string;
  /** The one label it is split by (e.g. `source`). */
  labelName: string;
  /** Upper bounds, ascending. */
  buckets: readonly number[];
  registers: Registry[];
}

/** A histogram with one label, observed into typed arrays, read by prom-client's registry. */
export class TalliedHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  readonly #labelName: string;
  readonly #bounds: readonly number[];
  readonly #series = new Map<string, Series>();

  constructor(opts: TalliedHistogramOptions) {
    this.name = opts.name;
    this.help = opts.help;
    this.#labelName = opts.labelName;
    this.#bounds = [...opts.buckets].sort((a, b) => a - b);
    // The registry reads a metric only through get()/getForPromString() (and reset()), whose
    // results have the documented MetricObject shape; it does not need a prom-client class.
    for (const r of opts.registers) r.registerMetric(this as unknown as Metric);
  }

  observe(labelValue: string, value: number): void {
    let s = this.#series.get(labelValue);
    if (!s) this.#series.set(labelValue, (s = { counts: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0, labels: { [this.#labelName]: labelValue } }));
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    s.counts[i] = (s.counts[i] as number) + 1;
    s.sum += value;
    s.count++;
  }

  /** As prom-client's Histogram lays its values out for the text exposition. */
  getForPromString(): MetricData {
    const values: Value[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.#series.values()) {
      let acc = 0;
      this.#bounds.forEach((le, i) => {
        acc += s.counts[i] as number;
        values.push({ labels: { le }, sharedLabels: s.labels, value: acc, metricName: bucket });
      });
      values.push(
        { labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket },
        { labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum` },
        { labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count` },
      );
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** The same with every value's labels in one object (prom-client's JSON form). */
  get(): MetricData {
    const m = this.getForPromString();
    return { ...m, values: m.values.map(({ sharedLabels, ...v }) => ({ ...v, labels: { ...v.labels, ...sharedLabels } })) };
  }

  reset(): void {
    this.#series.clear();
  }
}
