// A traffic chart in plain SVG: bytes per second in and out over the last CHART_SECONDS,
// with a clock time axis and a rate axis in the unit the peak needs.
import { clock, rateUnit } from './format.js';

export const CHART_SECONDS = 120;
const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 600;
const HEIGHT = 150;
const PLOT = { left: 68, right: 10, top: 12, bottom: 24 };
const TICK_EVERY_S = 30;

function node(tag, attrs = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

/** 1, 2 or 5 times a power of ten, at least `value`: a round top for the rate axis. */
function niceCeil(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/** A new, empty chart element for one app: `data-chart` (the live one) or `data-history` (24 h, from the server). */
export function createChart(key, kind = 'chart') {
  return node('svg', { class: 'chart', viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', [`data-${kind}`]: key, 'aria-label': `traffic of ${key}` });
}

/** The live chart: a point a second over CHART_SECONDS, ticks every half-minute. */
const LIVE = { points: CHART_SECONDS, stepS: 1, tickEveryS: TICK_EVERY_S };
/** The history chart: a point a minute over 24 h, ticks every 3 hours. */
export const HISTORY = { points: 24 * 60, stepS: 60, tickEveryS: 3 * 3600 };

/**
 * Draws `series` (step index, epoch seconds / stepS → { in, out } bytes) into `svg` for the
 * `points` steps ending at `nowS` (epoch seconds), as rates (bytes per second).
 */
export function drawChart(svg, series, nowS, { points: count, stepS, tickEveryS } = LIVE) {
  const last = Math.floor(nowS / stepS);
  const first = last - count + 1;
  const ins = [];
  const outs = [];
  for (let s = first; s <= last; s++) {
    const bytes = series?.get(s);
    ins.push((bytes?.in ?? 0) / stepS);
    outs.push((bytes?.out ?? 0) / stepS);
  }
  const peakIn = Math.max(0, ...ins);
  const peakOut = Math.max(0, ...outs);
  const peak = Math.max(peakIn, peakOut);
  let unit = rateUnit(peak);
  // A top of 1000 KiB/s reads better, and fits the axis, as 1 MiB/s.
  if (niceCeil(peak / unit.divisor) >= 1000) unit = rateUnit(unit.divisor * 1024);
  const top = niceCeil(peak / unit.divisor);
  const plotW = WIDTH - PLOT.left - PLOT.right;
  const plotH = HEIGHT - PLOT.top - PLOT.bottom;
  const x = (i) => PLOT.left + (i / (count - 1)) * plotW;
  const y = (bytes) => PLOT.top + plotH - (bytes / unit.divisor / top) * plotH;

  svg.replaceChildren();
  svg.dataset.peakIn = String(peakIn);
  svg.dataset.peakOut = String(peakOut);
  svg.dataset.unit = unit.name;
  // Rate axis: 0, half and the top, in the unit, with grid lines.
  for (const fraction of [0, 0.5, 1]) {
    const value = top * fraction;
    const py = PLOT.top + plotH - fraction * plotH;
    svg.append(node('line', { class: 'grid', x1: PLOT.left, x2: WIDTH - PLOT.right, y1: py, y2: py }));
    svg.append(node('text', { class: 'tick tick-y', x: PLOT.left - 6, y: py + 4, 'text-anchor': 'end' }, `${Number(value.toFixed(2))} ${unit.name}`));
  }
  // Time axis: clock times on whole half-minutes.
  for (let s = first; s <= last; s++) {
    const px = x(s - first);
    // A label this close to an edge would be cut off.
    if ((s * stepS) % tickEveryS !== 0 || px < PLOT.left + 30 || px > WIDTH - PLOT.right - 30) continue;
    svg.append(node('line', { class: 'grid', x1: px, x2: px, y1: PLOT.top, y2: PLOT.top + plotH }));
    const time = clock(s * stepS * 1000);
    svg.append(node('text', { class: 'tick tick-x', x: px, y: HEIGHT - 6, 'text-anchor': 'middle' }, stepS >= 60 ? time.slice(0, 5) : time));
  }
  svg.append(node('line', { class: 'axis', x1: PLOT.left, x2: WIDTH - PLOT.right, y1: PLOT.top + plotH, y2: PLOT.top + plotH }));
  // In as a shaded area under its line, out as a line on top: both stay visible when they
  // are equal (an echo, a proxy that answers in kind).
  const baseline = (PLOT.top + plotH).toFixed(1);
  const inPoints = ins.map((bytes, i) => `${x(i).toFixed(1)},${y(bytes).toFixed(1)}`).join(' ');
  svg.append(node('polygon', { class: 'area in', points: `${x(0).toFixed(1)},${baseline} ${inPoints} ${x(count - 1).toFixed(1)},${baseline}` }));
  svg.append(node('polyline', { class: 'series in', points: inPoints }));
  svg.append(node('polyline', { class: 'series out', points: outs.map((bytes, i) => `${x(i).toFixed(1)},${y(bytes).toFixed(1)}`).join(' ') }));
  // Legend, inside the plot's top left corner.
  svg.append(node('text', { class: 'legend in', x: PLOT.left + 8, y: PLOT.top + 12 }, '■ in (users → app)'));
  svg.append(node('text', { class: 'legend out', x: PLOT.left + 150, y: PLOT.top + 12 }, '■ out (app → users)'));
}
