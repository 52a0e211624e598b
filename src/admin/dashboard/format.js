// How the dashboard writes sizes, rates, durations and times.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 → "1.5 KiB". */
export function formatBytes(n) {
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

/** The unit a chart's axis uses for rates up to `max` bytes per second: its name and divisor. */
export function rateUnit(max) {
  let unit = 0;
  while (max >= 1024 ** (unit + 1) && unit < UNITS.length - 1) unit += 1;
  return { name: `${UNITS[unit]}/s`, divisor: 1024 ** unit };
}

export function formatDuration(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** Time of day of an ISO timestamp (or epoch milliseconds), as HH:MM:SS. */
export function clock(at) {
  if (at === undefined || at === null) return '–';
  const d = new Date(at);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** A DOM element: `attrs.text` sets its text, other attributes are set as given; children appended. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) if (child !== undefined && child !== null) node.append(child);
  return node;
}
