/**
 * A dependency-free SVG chart of a benchmark run: for each run, client latency p50/p99
 * unprotected vs protected, and the guest pause per checkpoint p50/p99.
 */
export interface ChartRun {
  run: string;
  unprotected: { latencyMsP50: number; latencyMsP99: number };
  protected: { latencyMsP50: number; latencyMsP99: number };
  pauseMsP50: number;
  pauseMsP99: number;
  checkpointsPerSec: number;
  throughputRatio: number;
}

const esc = (s: string) => s.replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c]!);

export function chartSvg(runs: ChartRun[], title: string): string {
  const series = [
    { key: 'lat p50 unprot', color: '#9ecae1', get: (r: ChartRun) => r.unprotected.latencyMsP50 },
    { key: 'lat p50 remus', color: '#3182bd', get: (r: ChartRun) => r.protected.latencyMsP50 },
    { key: 'lat p99 unprot', color: '#fdae6b', get: (r: ChartRun) => r.unprotected.latencyMsP99 },
    { key: 'lat p99 remus', color: '#e6550d', get: (r: ChartRun) => r.protected.latencyMsP99 },
    { key: 'pause p50', color: '#a1d99b', get: (r: ChartRun) => r.pauseMsP50 },
    { key: 'pause p99', color: '#31a354', get: (r: ChartRun) => r.pauseMsP99 },
  ];
  const W = 760;
  const H = 360;
  const left = 50;
  const top = 40;
  const plotH = 240;
  const max = Math.max(1, ...runs.flatMap((r) => series.map((s) => s.get(r)).filter(Number.isFinite)));
  const groupW = (W - left - 20) / Math.max(1, runs.length);
  const barW = (groupW - 20) / series.length;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${left}" y="20" font-size="14">${esc(title)} (ms)</text>`);
  for (let i = 0; i <= 4; i++) {
    const y = top + plotH - (plotH * i) / 4;
    out.push(`<line x1="${left}" x2="${W - 20}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end">${((max * i) / 4).toFixed(1)}</text>`);
  }
  runs.forEach((r, g) => {
    const x0 = left + g * groupW + 10;
    series.forEach((s, k) => {
      const v = s.get(r);
      if (!Number.isFinite(v)) return;
      const h = (plotH * v) / max;
      out.push(`<rect x="${(x0 + k * barW).toFixed(1)}" y="${(top + plotH - h).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${s.color}"><title>${esc(s.key)}: ${v}</title></rect>`);
    });
    out.push(`<text x="${x0 + (groupW - 20) / 2}" y="${top + plotH + 16}" text-anchor="middle">${esc(r.run)}</text>`);
    out.push(`<text x="${x0 + (groupW - 20) / 2}" y="${top + plotH + 30}" text-anchor="middle" fill="#555">${r.checkpointsPerSec} ckpt/s, thr ×${r.throughputRatio}</text>`);
  });
  series.forEach((s, k) => {
    const x = left + (k % 3) * 220;
    const y = H - 36 + Math.floor(k / 3) * 16;
    out.push(`<rect x="${x}" y="${y - 9}" width="10" height="10" fill="${s.color}"/><text x="${x + 14}" y="${y}">${esc(s.key)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** One group of bars: a point of a series (a guest size, a dirty rate, a number of domains). */
export interface BarGroup {
  label: string;
  /** A second line under the label (the point's rate, or why it has no bars). */
  sub?: string;
  bars: { key: string; value: number }[];
}

const PALETTE = ['#a1d99b', '#31a354', '#9ecae1', '#3182bd', '#fdae6b', '#e6550d'];

/** Grouped bars on one axis, a colour per bar key (the same key in every group). */
export function barChartSvg(groups: BarGroup[], title: string): string {
  const keys = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.key)))];
  const color = (k: string) => PALETTE[keys.indexOf(k) % PALETTE.length]!;
  const W = 760;
  const H = 360;
  const left = 50;
  const top = 40;
  const plotH = 240;
  const max = Math.max(1, ...groups.flatMap((g) => g.bars.map((b) => b.value)).filter(Number.isFinite));
  const groupW = (W - left - 20) / Math.max(1, groups.length);
  const barW = (groupW - 20) / Math.max(1, keys.length);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${left}" y="20" font-size="14">${esc(title)}</text>`);
  for (let i = 0; i <= 4; i++) {
    const y = top + plotH - (plotH * i) / 4;
    out.push(`<line x1="${left}" x2="${W - 20}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end">${((max * i) / 4).toFixed(1)}</text>`);
  }
  groups.forEach((g, i) => {
    const x0 = left + i * groupW + 10;
    for (const b of g.bars) {
      if (!Number.isFinite(b.value)) continue;
      const h = (plotH * b.value) / max;
      out.push(`<rect x="${(x0 + keys.indexOf(b.key) * barW).toFixed(1)}" y="${(top + plotH - h).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${color(b.key)}"><title>${esc(b.key)}: ${b.value}</title></rect>`);
    }
    out.push(`<text x="${x0 + (groupW - 20) / 2}" y="${top + plotH + 16}" text-anchor="middle">${esc(g.label)}</text>`);
    if (g.sub) out.push(`<text x="${x0 + (groupW - 20) / 2}" y="${top + plotH + 30}" text-anchor="middle" fill="#555">${esc(g.sub)}</text>`);
  });
  keys.forEach((k, i) => {
    const x = left + (i % 3) * 220;
    const y = H - 36 + Math.floor(i / 3) * 16;
    out.push(`<rect x="${x}" y="${y - 9}" width="10" height="10" fill="${color(k)}"/><text x="${x + 14}" y="${y}">${esc(k)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
