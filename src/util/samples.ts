/** Small numeric summaries for engine statistics and benchmarks. */
export class Samples {
  private values: number[] = [];
  private sorted = true;
  constructor(private readonly cap = 100_000) {}

  add(v: number): void {
    if (this.values.length >= this.cap) this.values.splice(0, this.values.length >> 1);
    this.values.push(v);
    this.sorted = false;
  }

  get count(): number {
    return this.values.length;
  }

  /** Nearest-rank percentile, p in [0, 100]; NaN when empty. */
  percentile(p: number): number {
    if (this.values.length === 0) return NaN;
    if (!this.sorted) {
      this.values.sort((a, b) => a - b);
      this.sorted = true;
    }
    const rank = Math.min(this.values.length - 1, Math.max(0, Math.ceil((p / 100) * this.values.length) - 1));
    return this.values[rank]!;
  }

  mean(): number {
    if (this.values.length === 0) return NaN;
    let s = 0;
    for (const v of this.values) s += v;
    return s / this.values.length;
  }

  summary(): { count: number; p50: number; p99: number; max: number; mean: number } {
    return { count: this.count, p50: this.percentile(50), p99: this.percentile(99), max: this.percentile(100), mean: this.mean() };
  }

  reset(): void {
    this.values = [];
    this.sorted = true;
  }
}

export function round(v: number, digits = 3): number {
  if (!Number.isFinite(v)) return v;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
