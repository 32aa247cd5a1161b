// History points as chart columns: which bucket a range is drawn in, and where the line must break.
// No DOM here, so node can check it (tests/api/test_chart_series.py).

const NICE_BUCKETS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
const POINTS_PER_SERIES = 720;  // about one per pixel of a wide chart; a day of one variable stays small
const RAW_UP_TO = 900;          // ranges up to 15 min are drawn from raw samples, longer ones from bucket averages

export function bucketFor(span) {
  if (span <= RAW_UP_TO) return null;
  const want = span / POINTS_PER_SERIES;
  return NICE_BUCKETS.find((b) => b >= want) || 86400;
}

// [xs, ys] of one series with nulls where the data stops: BAD samples (link down) and missing stretches.
export function toColumns(points, bucket) {
  const xs = [], ys = [];
  const value = bucket ? (p) => p.avg : (p) => (p.quality === "bad" ? null : p.value);
  const dts = [];
  for (let i = 1; i < points.length; i++) dts.push(points[i].ts - points[i - 1].ts);
  dts.sort((a, b) => a - b);
  const typical = bucket || (dts.length ? dts[Math.floor(dts.length / 2)] : 1);
  // One missing bucket is a gap; raw samples may jitter, so they break only after three typical periods (5 s at least).
  const gapAfter = bucket ? bucket * 1.5 : Math.max(typical * 3, 5);
  let prev = null;
  for (const p of points) {
    if (prev !== null && p.ts - prev > gapAfter) { xs.push(prev + typical); ys.push(null); }
    const v = value(p);
    xs.push(p.ts); ys.push(typeof v === "number" ? v : null);
    prev = p.ts;
  }
  return [xs, ys];
}

