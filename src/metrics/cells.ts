// A request counter and a duration histogram that share their series ("cells"): one cell per
// label set holds the count (the counter's value and the histogram's _count), the sum and the
// buckets. The hot path holds its cell and calls observe(): no labels, no hashing. prom-client
// serves them: CellCounter and CellHistogram are its Counter and Histogram with their values
// read from the cells, in the shape prom-client's own produce, so /metrics is formatted by
// prom-client exactly as before (src/metrics/cells.test.ts compares the two byte for byte).
import { Counter, Histogram, type CounterConfiguration, type HistogramConfiguration, type LabelValues, type MetricObjectWithValues, type MetricValue, type MetricValueWithName } from 'prom-client';

export class Cell {
  readonly labels: Readonly<Record<string, string>>;
  count = 0;
  sum = 0;
  /** Observations per bucket (not cumulative); one past the last bound: none (only +Inf). */
  readonly buckets: Float64Array;
  readonly #bounds: readonly number[];

  constructor(labels: Readonly<Record<string, string>>, bounds: readonly number[]) {
    this.labels = labels;
    this.#bounds = bounds;
    this.buckets = new Float64Array(bounds.length + 1);
  }

  /** One observation of `value` (finite; the caller sanitizes). */
  observe(value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.buckets[i]!++;
    this.sum += value;
    this.count++;
  }

  reset(): void {
    this.count = 0;
    this.sum = 0;
    this.buckets.fill(0);
  }
}

/** The cells of one counter/histogram pair, in the order they were made (the order served). */
export class Cells<L extends Record<string, string>> {
  readonly bounds: readonly number[];
  readonly all: Cell[] = [];
  readonly #byLabels = new Map<string, Cell>();

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
  }

  /** The cell for `labels`: made once per distinct label set (two callers with the same labels share it). */
  add(labels: L): Cell {
    const key = Object.values(labels).join('\0');
    let cell = this.#byLabels.get(key);
    if (!cell) {
      cell = new Cell(labels, this.bounds);
      this.#byLabels.set(key, cell);
      this.all.push(cell);
    }
    return cell;
  }

  reset(): void {
    for (const c of this.all) c.reset();
  }
}

/** A prom-client Counter whose values are the cells' counts. Record through the cells, not inc(). */
export class CellCounter<T extends string> extends Counter<T> {
  readonly #cells: Cells<Record<T, string>>;
  readonly #config: CounterConfiguration<T>;

  constructor(cells: Cells<Record<T, string>>, config: CounterConfiguration<T>) {
    super(config);
    this.#cells = cells;
    this.#config = config;
  }

  override get(): Promise<MetricObjectWithValues<MetricValue<T>>> {
    const values: MetricValue<T>[] = [];
    for (const c of this.#cells.all) if (c.count > 0) values.push({ value: c.count, labels: c.labels as LabelValues<T> });
    const { name, help, aggregator = 'sum' } = this.#config;
    return Promise.resolve({ help, name, type: 'counter', values, aggregator } as unknown as MetricObjectWithValues<MetricValue<T>>);
  }

  override reset(): void {
    if (#cells in this) this.#cells.reset(); // prom-client's constructor calls reset() before the field is set
  }
}

interface HistogramValue {
  labels: Record<string, string | number>;
  sharedLabels: Readonly<Record<string, string>>;
  value: number;
  metricName: string;
  exemplar: null | undefined;
}

/** A prom-client Histogram whose values are the cells' buckets, sums and counts. Record through the cells. */
export class CellHistogram<T extends string> extends Histogram<T> {
  readonly #cells: Cells<Record<T, string>>;
  readonly #config: HistogramConfiguration<T>;

  constructor(cells: Cells<Record<T, string>>, config: HistogramConfiguration<T>) {
    super(config);
    this.#cells = cells;
    this.#config = config;
  }

  /** What the registry formats: per cell its cumulative buckets, +Inf, _sum and _count (prom-client's shape). */
  getForPromString(): Promise<{ name: string; help: string; type: string; values: HistogramValue[]; aggregator: string }> {
    const { name, help, aggregator = 'sum' } = this.#config;
    const bucket = `${name}_bucket`;
    const values: HistogramValue[] = [];
    const bounds = this.#cells.bounds;
    for (const c of this.#cells.all) {
      if (c.count === 0) continue;
      let acc = 0;
      for (let i = 0; i < bounds.length; i++) {
        acc += c.buckets[i]!;
        values.push({ labels: { le: bounds[i]! }, sharedLabels: c.labels, value: acc, metricName: bucket, exemplar: null });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: c.labels, value: c.count, metricName: bucket, exemplar: null });
      values.push({ labels: {}, sharedLabels: c.labels, value: c.sum, metricName: `${name}_sum`, exemplar: undefined });
      values.push({ labels: {}, sharedLabels: c.labels, value: c.count, metricName: `${name}_count`, exemplar: undefined });
    }
    return Promise.resolve({ name, help, type: 'histogram', values, aggregator });
  }

  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<T>>> {
    const data = await this.getForPromString();
    const values = data.values.map(({ labels, sharedLabels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } }));
    return { ...data, values } as unknown as MetricObjectWithValues<MetricValueWithName<T>>;
  }

  override reset(): void {
    if (#cells in this) this.#cells.reset(); // prom-client's constructor calls reset() before the field is set
  }
}
