// cophr trend charts: vital signs, body measurements, lab results and questionnaire scores
// over time, as inline SVG drawn here (no library, nothing fetched: the app's content
// security policy allows only this origin's own script and style, so every style is a class
// in app.css and the SVG uses presentation attributes only). Each chart has a table of the
// same data behind it, and an aria-label summarising the trend. Used by the node's web app
// (app.js, from entries read through the audited REST API) and by the browser-only patient
// page (patient.js, from the record opened in the page). See docs/care-team.md "Charts".
//
// Nothing here throws on bad data: a value that is not a finite number, a time that does not
// parse, an entry that is not an object are skipped (and counted, so the page can say so).

/** The most points one measure charts (the newest are kept; the page says how many were left out). */
export const MAX_POINTS = 5000;
/** The most measures (charts) built from one set of entries; the rest are named, not drawn. */
export const MAX_MEASURES = 200;
/** The longest test or questionnaire name used to group results (longer ones are cut). */
export const MAX_NAME = 120;

/** The latest time a JavaScript Date holds (milliseconds since the epoch). */
const MAX_TIME = 8.64e15;

/** The categories whose entries are charted. */
/** The cophr extension carrying a published questionnaire's scoring rule (its bands). */
export const SCORING = 'https://cophr.invalid/questionnaire-scoring';
/** The largest published questionnaire read for its bands, in characters (as the node's bound). */
export const MAX_DEFINITION = 64 * 1024;
/** Most severity bands drawn on one chart (as the node's bound). */
export const MAX_BANDS = 16;

/**
 * The severity bands of a published questionnaire (its FHIR Questionnaire as JSON text):
 * `{title, bands: [{low, high, label}]}`, or null if it does not read as one.
 */
export function questionnaireBands(text) {
  if (typeof text !== 'string' || text.length > MAX_DEFINITION) return null;
  let q;
  try { q = JSON.parse(text); } catch { return null; }
  if (!q || typeof q !== 'object' || q.resourceType !== 'Questionnaire') return null;
  const title = typeof q.title === 'string' ? q.title : (typeof q.name === 'string' ? q.name : '');
  const rule = (Array.isArray(q.extension) ? q.extension : []).find((e) => e && e.url === SCORING);
  const bands = [];
  for (const b of (rule && Array.isArray(rule.extension) ? rule.extension : [])) {
    if (!b || b.url !== 'band' || !Array.isArray(b.extension) || bands.length >= MAX_BANDS) continue;
    const part = (u, k) => { const x = b.extension.find((e) => e && e.url === u); return x ? x[k] : undefined; };
    const low = part('low', 'valueInteger');
    const high = part('high', 'valueInteger');
    const label = part('label', 'valueString');
    if (Number.isInteger(low) && Number.isInteger(high) && low <= high && typeof label === 'string' && label) {
      bands.push({ low, high, label: label.slice(0, MAX_NAME) });
    }
  }
  return title ? { title, bands } : null;
}

/** The band a score falls in, or null. */
export function bandOf(bands, v) {
  return (bands || []).find((b) => v >= b.low && v <= b.high) || null;
}

export const CHART_CATEGORIES = ['vital-signs', 'wearables', 'examinations', 'lab-results', 'questionnaires'];

const GROUPS = {
  vital: 'Vital signs',
  body: 'Body measurements',
  lab: 'Lab results',
  questionnaire: 'Questionnaire scores',
};

/** Shown units for UCUM codes. */
const UNIT_TEXT = {
  'mm[Hg]': 'mmHg', Cel: '°C', '[degF]': '°F', 'kg/m2': 'kg/m²', m2: 'm²', '/min': '/min',
};

/**
 * Typical adult ranges for vital signs, shaded on their charts (docs/care-team.md "Charts"
 * names the sources): blood pressure the NHS "ideal" 90/60–120/80 mmHg; resting heart rate
 * 60–100/min; respiration rate, SpO2 and temperature the NEWS2 (Royal College of Physicians,
 * 2017) score-zero bands; blood glucose the NICE before-meals target 4–7 mmol/L; BMI the
 * NHS healthy-weight band. Keyed `field|unit`.
 */
export const ADULT_RANGES = {
  'systolic|mm[Hg]': [90, 120],
  'diastolic|mm[Hg]': [60, 80],
  'heart-rate|/min': [60, 100],
  'respiration-rate|/min': [12, 20],
  'spo2|%': [96, 100],
  'temperature|Cel': [36.1, 38.0],
  'temperature|[degF]': [97.0, 100.4],
  'blood-glucose|mmol/L': [4.0, 7.0],
  'blood-glucose|mg/dL': [72, 126],
  'bmi|kg/m2': [18.5, 24.9],
};

/** Titles of the numeric fields of vital signs, wearables and examinations, in chart order. */
const FIELDS = [
  ['blood-pressure', 'Blood pressure', 'vital'],
  ['heart-rate', 'Heart rate', 'vital'],
  ['respiration-rate', 'Respiration rate', 'vital'],
  ['spo2', 'Oxygen saturation (SpO2)', 'vital'],
  ['temperature', 'Body temperature', 'vital'],
  ['blood-glucose', 'Blood glucose', 'vital'],
  ['steps', 'Steps', 'vital'],
  ['weight', 'Weight', 'body'],
  ['height', 'Height', 'body'],
  ['bmi', 'Body mass index', 'body'],
  ['waist', 'Waist circumference', 'body'],
  ['hip-circumference', 'Hip circumference', 'body'],
  ['head-circumference', 'Head circumference', 'body'],
  ['body-surface-area', 'Body surface area', 'body'],
];
const FIELD_INFO = new Map(FIELDS.map(([f, title, group], i) => [f, { title, group, order: i }]));
const TIME_FIELDS = {
  'vital-signs': ['measured-at'],
  wearables: ['measured-at'],
  examinations: ['measured-at'],
  'lab-results': ['collected', 'reported'],
  questionnaires: ['completed'],
};
const SOURCE_TEXT = {
  'vital-signs': 'Vital signs', wearables: 'Wearable', examinations: 'Examination',
  'lab-results': 'Lab result', questionnaires: 'Questionnaire',
};

/** A unit as shown ('' for none). */
export function unitText(u) {
  if (typeof u !== 'string') return '';
  return UNIT_TEXT[u] ?? u;
}

const NUMBER_RE = /^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$/;

/** A finite number from a number or a plain numeric text; null for anything else. */
export function toNumber(v) {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v !== 'string') return null;
  const s = v.trim();
  if (!NUMBER_RE.test(s)) return null;
  const n = Number(s);
  return Number.isFinite(n) ? n : null;
}

/** A number and a unit from a field's value: `{value, unit}`, a number, or numeric text. */
function quantity(v) {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const n = toNumber(v.value);
    return n === null ? null : { value: n, unit: typeof v.unit === 'string' ? v.unit : '' };
  }
  const n = toNumber(v);
  return n === null ? null : { value: n, unit: '' };
}

/** A lab result's number: plain numeric text, optionally followed by its own unit. */
function labNumber(result, unit) {
  if (typeof result === 'number') return toNumber(result);
  if (typeof result !== 'string') return null;
  let s = result.trim();
  if (unit && s.endsWith(unit)) s = s.slice(0, -unit.length).trim();
  return toNumber(s);
}

const RANGE_NUM = '([-+]?(?:\\d+(?:\\.\\d+)?|\\.\\d+))';
const BOTH_RE = new RegExp(`^${RANGE_NUM}\\s*([^\\d\\s][^-–—]*?)?\\s*(?:-|–|—|to)\\s*${RANGE_NUM}\\s*(\\S.*)?$`, 'i');
const UPPER_RE = new RegExp(`^(?:(?:…|\\.\\.\\.)\\s*to\\s*|<=?\\s*|≤\\s*|up to\\s*)${RANGE_NUM}\\s*(\\S.*)?$`, 'i');
const LOWER_RE = new RegExp(`^(?:>=?\\s*|≥\\s*)${RANGE_NUM}\\s*(\\S.*)?$|^${RANGE_NUM}\\s*([^\\d\\s][^-–—]*?)?\\s*to\\s*(?:…|\\.\\.\\.)$`, 'i');

/**
 * A reference range's text ("3.5-5.3", "3.5 to 5.3 mmol/L", "3.5 mmol/L to 5.3 mmol/L",
 * "… to 5.3", "< 5.3", "> 60") as `{low, high}` (either may be null); null if it does not
 * read as one, or if low is above high.
 */
export function parseRange(text) {
  if (typeof text !== 'string' || text.length > 200) return null;
  const s = text.trim();
  let m = BOTH_RE.exec(s);
  if (m) {
    const low = Number(m[1]);
    const high = Number(m[3]);
    if (!Number.isFinite(low) || !Number.isFinite(high) || low > high) return null;
    return { low, high };
  }
  m = UPPER_RE.exec(s);
  if (m) {
    const high = Number(m[1]);
    return Number.isFinite(high) ? { low: null, high } : null;
  }
  m = LOWER_RE.exec(s);
  if (m) {
    const low = Number(m[1] ?? m[3]);
    return Number.isFinite(low) ? { low, high: null } : null;
  }
  return null;
}

/**
 * Milliseconds since the epoch of an RFC 3339 time or a date (or already milliseconds, as
 * the patient page's items carry them); null if it does not parse.
 */
function timeOf(v) {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 && v <= MAX_TIME ? v : null;
  if (typeof v !== 'string' || v.length > 64) return null;
  const t = Date.parse(v);
  return Number.isFinite(t) ? t : null;
}

/** When an entry's reading was taken: its own time field, else when it was written. */
function entryTime(e) {
  const body = e.body && typeof e.body === 'object' ? e.body : {};
  for (const f of TIME_FIELDS[e.category] || []) {
    const t = timeOf(body[f]);
    if (t !== null) return t;
  }
  return timeOf(e.created) ?? timeOf(e.time) ?? timeOf(e.updated);
}

function nameKey(s) {
  return s.trim().replace(/\s+/g, ' ').slice(0, MAX_NAME).toLowerCase();
}

/**
 * Groups entries (as the REST API or the patient page lists them: `{id, category, body,
 * created, time, deleted}`) into measures, each `{key, group, title, unit, series: [{name,
 * field, points: [{t, v, id, source}], range}], rows, skipped, dropped, rangeNote}`. A
 * row is one reading (`{t, values: [v per series or null], id, source, rangeText}`).
 * Measures are ordered vital signs, body measurements, lab results (by test), questionnaires.
 * `titleOf(category, field)` names fields this module does not know.
 */
export function buildMeasures(entries, titleOf) {
  const byKey = new Map();
  const bandsByName = new Map();
  const list = Array.isArray(entries) ? entries : [];
  const measure = (key, make) => {
    let m = byKey.get(key);
    if (!m) {
      m = make();
      m.key = key;
      m.rows = [];
      m.skipped = 0;
      m.dropped = 0;
      m.rangeNote = '';
      byKey.set(key, m);
    }
    return m;
  };
  for (const e of list) {
    if (!e || typeof e !== 'object' || e.deleted) continue;
    const body = e.body;
    if (!body || typeof body !== 'object' || Array.isArray(body)) continue;
    const cat = e.category;
    const t = entryTime(e);
    const source = SOURCE_TEXT[cat] || String(cat || '');
    const id = typeof e.id === 'string' ? e.id : '';
    if (cat === 'vital-signs' || cat === 'wearables' || cat === 'examinations') {
      // Blood pressure: systolic and diastolic, one reading, two series.
      if ('systolic' in body || 'diastolic' in body) {
        const sys = quantity(body.systolic);
        const dia = quantity(body.diastolic);
        const unit = (sys && sys.unit) || (dia && dia.unit) || 'mm[Hg]';
        const m = measure(`vital|blood-pressure|${unit}`, () => ({
          group: GROUPS.vital, order: 0, title: 'Blood pressure', unit,
          series: [
            { name: 'Systolic', field: 'systolic', points: [], range: adult('systolic', unit) },
            { name: 'Diastolic', field: 'diastolic', points: [], range: adult('diastolic', unit) },
          ],
        }));
        addRow(m, t, [sys && sys.unit === unit ? sys.value : null,
          dia && dia.unit === unit ? dia.value : null], id, source, '');
      }
      for (const [field, raw] of Object.entries(body)) {
        if (field === 'systolic' || field === 'diastolic' || field.startsWith('fhir-')) continue;
        if (TIME_FIELDS[cat].includes(field)) continue;
        const known = FIELD_INFO.get(field);
        const q = quantity(raw);
        // Unknown fields are charted only when they are quantities (not text or codes).
        if (!known && !(raw && typeof raw === 'object' && 'value' in raw && 'unit' in raw)) continue;
        const unit = q ? q.unit : (raw && typeof raw === 'object' && typeof raw.unit === 'string' ? raw.unit : '');
        const title = known ? known.title : ((titleOf && titleOf(cat, field)) || field);
        const m = measure(`vital|${field}|${unit}`, () => ({
          group: known && known.group === 'body' ? GROUPS.body : GROUPS.vital,
          order: known ? known.order : FIELDS.length,
          title, unit,
          series: [{ name: title, field, points: [], range: adult(field, unit) }],
        }));
        addRow(m, t, [q ? q.value : null], id, source, '');
      }
    } else if (cat === 'lab-results') {
      if (typeof body.test !== 'string' || !body.test.trim()) continue;
      const unit = typeof body.unit === 'string' ? body.unit.trim() : '';
      const test = body.test.trim().replace(/\s+/g, ' ').slice(0, MAX_NAME);
      const m = measure(`lab|${nameKey(test)}|${unit}`, () => ({
        group: GROUPS.lab, order: 0, title: test, unit,
        series: [{ name: test, field: 'result', points: [], range: null }],
      }));
      const rangeText = typeof body['reference-range'] === 'string' ? body['reference-range'].trim() : '';
      addRow(m, t, [labNumber(body.result, unit)], id, source, rangeText);
    } else if (cat === 'questionnaires') {
      // A published questionnaire: not a reading, but its severity bands shade its scores.
      if ('definition' in body) {
        const d = questionnaireBands(body.definition);
        if (d && d.bands.length) bandsByName.set(nameKey(d.title.trim().replace(/\s+/g, ' ').slice(0, MAX_NAME)), d.bands);
        continue;
      }
      if (typeof body.questionnaire !== 'string' || !body.questionnaire.trim()) continue;
      const name = body.questionnaire.trim().replace(/\s+/g, ' ').slice(0, MAX_NAME);
      const m = measure(`questionnaire|${nameKey(name)}`, () => ({
        group: GROUPS.questionnaire, order: 0, title: `${name} score`, unit: '',
        series: [{ name: 'Score', field: 'score', points: [], range: null }],
      }));
      addRow(m, t, [toNumber(body.score)], id, source, '');
    }
  }
  const groupRank = Object.values(GROUPS);
  const out = [...byKey.values()].sort((a, b) => groupRank.indexOf(a.group) - groupRank.indexOf(b.group)
    || a.order - b.order || a.title.localeCompare(b.title) || a.unit.localeCompare(b.unit));
  for (const m of out) {
    if (m.group === GROUPS.questionnaire) m.bands = bandsByName.get(m.key.slice('questionnaire|'.length)) || null;
    finish(m);
  }
  return out;
}

/** The measures to draw (at most MAX_MEASURES, in order) and the ones left out. */
export function limitMeasures(measures) {
  return { shown: measures.slice(0, MAX_MEASURES), more: measures.slice(MAX_MEASURES) };
}

function adult(field, unit) {
  const r = ADULT_RANGES[`${field}|${unit}`];
  return r ? { low: r[0], high: r[1], adult: true } : null;
}

function addRow(m, t, values, id, source, rangeText) {
  if (t === null || values.every((v) => v === null)) {
    m.skipped += 1;
    return;
  }
  m.rows.push({ t, values, id, source, rangeText });
}

/** Sorts a measure's rows by time, keeps the newest MAX_POINTS, fills its series. */
function finish(m) {
  m.rows.sort((a, b) => a.t - b.t);
  if (m.rows.length > MAX_POINTS) {
    m.dropped = m.rows.length - MAX_POINTS;
    m.rows = m.rows.slice(m.dropped);
  }
  for (const row of m.rows) {
    row.values.forEach((v, i) => {
      if (v !== null) m.series[i].points.push({ t: row.t, v, id: row.id, source: row.source });
    });
  }
  // A lab test's range: the newest reference range given with a result that reads as one.
  if (m.group === GROUPS.lab) {
    const ranges = new Set();
    for (let i = m.rows.length - 1; i >= 0; i -= 1) {
      const r = parseRange(m.rows[i].rangeText);
      if (!r) continue;
      if (!m.series[0].range) m.series[0].range = { ...r, adult: false, text: m.rows[i].rangeText };
      ranges.add(`${r.low}|${r.high}`);
    }
    if (ranges.size > 1) {
      m.rangeNote = `The results give ${ranges.size} different reference ranges; the newest, `
        + `${m.series[0].range.text}, is shaded.`;
    }
  }
}

// ------------------------------------------------------------------------------------------
// Drawing.

const SVG = 'http://www.w3.org/2000/svg';
const W = 720;
const H = 260;
const PAD = { left: 56, right: 16, top: 14, bottom: 36 };
const DAY = 86_400_000;

const dateFormat = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const monthFormat = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short' });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

function showDate(t) { return dateFormat.format(new Date(t)); }
function showDateTime(t) { return dateTimeFormat.format(new Date(t)); }

/** A number as shown: at most 3 decimals, no trailing zeros. */
export function showNumber(v) {
  if (!Number.isFinite(v)) return '';
  return String(Math.round(v * 1000) / 1000);
}

function withUnit(text, unit) {
  const u = unitText(unit);
  if (!u) return text;
  return u === '%' || u.startsWith('/') ? `${text}${u}` : `${text} ${u}`;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

/** About five round steps covering [lo, hi]. */
function ticks(lo, hi) {
  const span = hi - lo;
  const raw = span / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => span / s <= 6) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9 && out.length < 12; v += step) {
    out.push(Math.round(v / step) * step);
  }
  return out;
}

/** A reading's values as text: "140/90 mmHg" for blood pressure, "4.1 mmol/L" otherwise. */
function readingText(m, values) {
  if (m.series.length === 2) {
    return withUnit(values.map((v) => (v === null ? '—' : showNumber(v))).join('/'), m.unit);
  }
  return withUnit(showNumber(values[0]), m.unit);
}

function rangeText(r, unit) {
  if (!r) return '';
  if (r.low !== null && r.high !== null) return withUnit(`${showNumber(r.low)} to ${showNumber(r.high)}`, unit);
  if (r.low !== null) return withUnit(`${showNumber(r.low)} or more`, unit);
  return withUnit(`up to ${showNumber(r.high)}`, unit);
}

/** Where a value lies against a range: ' (above …)', ' (below …)' or ''. */
function against(v, r, what) {
  if (!r || v === null) return '';
  if (r.high !== null && v > r.high) return ` (above the ${what})`;
  if (r.low !== null && v < r.low) return ` (below the ${what})`;
  return '';
}

function rangeName(r) {
  return r && r.adult ? 'typical adult range' : 'reference range';
}

/** The one-sentence summary a screen reader hears for the chart. */
export function summary(m) {
  const rows = m.rows;
  const n = rows.length;
  const noun = m.group === GROUPS.lab ? 'result' : (m.group === GROUPS.questionnaire ? 'score' : 'reading');
  if (n === 0) return `${m.title}: no ${noun}s that can be charted.`;
  const last = rows[n - 1];
  const parts = [`${m.title}: ${n} ${noun}${n === 1 ? '' : 's'}`];
  if (n > 1) parts[0] += ` from ${showDate(rows[0].t)} to ${showDate(last.t)}`;
  let latest = `Latest ${readingText(m, last.values)} on ${showDate(last.t)}`;
  latest += m.series.map((s, i) => against(last.values[i], s.range,
    m.series.length > 1 ? `${rangeName(s.range)} for ${s.name.toLowerCase()}` : rangeName(s.range))).join('');
  parts.push(latest);
  if (n > 1) {
    parts.push(m.series.map((s, i) => {
      if (s.points.length === 0) return '';
      let lo = Infinity;
      let hi = -Infinity;
      for (const p of s.points) { lo = Math.min(lo, p.v); hi = Math.max(hi, p.v); }
      const name = i === 0 ? s.name : s.name.toLowerCase();
      const what = m.series.length > 1 ? `${name} ranged` : 'Ranged';
      return `${what} ${withUnit(`${showNumber(lo)} to ${showNumber(hi)}`, m.unit)}`;
    }).filter(Boolean).join('; '));
  }
  if (m.bands && m.bands.length) {
    const b = bandOf(m.bands, last.values[0]);
    if (b) parts[1] += ` (${b.label})`;
    parts.push(`Severity bands: ${m.bands.map((x) => `${x.low} to ${x.high} ${x.label}`).join(', ')}`);
  }
  const ranged = m.series.filter((s) => s.range);
  if (ranged.length) {
    parts.push(`Shaded: ${ranged.map((s) => `${m.series.length > 1 ? `${s.name.toLowerCase()} ` : ''}${rangeName(s.range)} ${rangeText(s.range, m.unit)}`).join('; ')}`);
  }
  return `${parts.join('. ')}.`;
}

let chartCount = 0;

/**
 * One measure's chart: a `<figure class="trend">` holding a heading (`hx`), the SVG
 * (role="img", aria-label = summary, aria-describedby = the note on values left out and on
 * the shaded band, when there is one), that note, and a "Show as table"
 * button revealing a table of the same readings (built when first shown).
 */
export function renderTrend(m, hx = 'h3') {
  chartCount += 1;
  const id = `trend-${chartCount}`;
  const fig = el('figure', { class: 'trend', id, 'data-measure': m.key, 'aria-labelledby': `${id}-title` });
  fig.append(el(hx, { id: `${id}-title`, class: 'trend-title' }, m.title, m.unit ? ` (${unitText(m.unit)})` : ''));
  const n = m.rows.length;
  const notes = [];
  if (m.skipped) {
    notes.push(`${m.skipped} ${m.skipped === 1 ? 'entry was' : 'entries were'} left out: no number or no time to chart.`);
  }
  if (m.dropped) notes.push(`Only the newest ${MAX_POINTS} readings are charted; ${m.dropped} older ones are left out.`);
  if (m.rangeNote) notes.push(m.rangeNote);
  if (m.series.some((s) => s.range && s.range.adult)) {
    notes.push('The shaded band is a typical adult range, not a target set for you.');
  }
  const noteId = notes.length ? `${id}-note` : null;
  if (n >= 2) {
    fig.append(draw(m, summary(m), noteId));
    if (m.series.length > 1 || m.series.some((s) => s.range) || (m.bands && m.bands.length)) fig.append(legend(m));
  } else {
    fig.append(el('p', { class: 'trend-message', role: 'note' }, n === 0
      ? `Nothing to chart yet: no ${m.title.toLowerCase()} value that reads as a number.`
      : `Only one value so far (${readingText(m, m.rows[0].values)} on ${showDate(m.rows[0].t)}): a trend needs two or more.`));
  }
  if (noteId) fig.append(el('p', { class: 'trend-note help', id: noteId }, notes.join(' ')));
  if (n > 0) {
    const tableId = `${id}-table`;
    const box = el('div', { id: tableId, class: 'scroll trend-table', hidden: true });
    const toggle = el('button', {
      type: 'button', class: 'secondary small trend-toggle', 'aria-expanded': 'false', 'aria-controls': tableId,
    }, 'Show as table', el('span', { class: 'sr-only' }, `: ${m.title}`));
    toggle.addEventListener('click', () => {
      const open = toggle.getAttribute('aria-expanded') !== 'true';
      if (open && !box.firstChild) box.append(table(m));
      box.hidden = !open;
      toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
      toggle.firstChild.textContent = open ? 'Hide the table' : 'Show as table';
    });
    fig.append(el('p', { class: 'actions' }, toggle), box);
  }
  return fig;
}

/** The table behind a chart: one row per reading, newest first. */
function table(m) {
  const lab = m.group === GROUPS.lab;
  const banded = Boolean(m.bands && m.bands.length);
  const heads = ['Date', ...m.series.map((s) => (m.series.length > 1 ? s.name : (lab ? 'Result' : 'Value'))),
    ...(lab ? ['Reference range'] : []), ...(banded ? ['Severity'] : []), 'From'];
  const t = el('table', { class: 'trend-data' },
    el('caption', {}, `${m.title}${m.unit ? ` in ${unitText(m.unit)}` : ''}: ${m.rows.length} `
      + `${m.rows.length === 1 ? 'value' : 'values'}, newest first`),
    el('thead', {}, el('tr', {}, heads.map((x) => el('th', { scope: 'col' }, x)))));
  const tb = el('tbody');
  for (let i = m.rows.length - 1; i >= 0; i -= 1) {
    const r = m.rows[i];
    tb.append(el('tr', { 'data-entry': r.id },
      el('th', { scope: 'row' }, el('time', { datetime: new Date(r.t).toISOString() }, showDateTime(r.t))),
      r.values.map((v, k) => el('td', { class: 'num' }, v === null ? '—' : withUnit(showNumber(v), m.unit)
        + against(v, m.series[k].range, rangeName(m.series[k].range)))),
      lab ? el('td', {}, r.rangeText || '—') : null,
      banded ? el('td', {}, (bandOf(m.bands, r.values[0]) || { label: '—' }).label) : null,
      el('td', {}, r.source)));
  }
  t.append(tb);
  return t;
}

function legend(m) {
  const items = [];
  m.series.forEach((s, i) => {
    if (m.series.length > 1) {
      items.push(el('li', {}, el('span', { class: `key key-${i}`, 'aria-hidden': 'true' }), s.name,
        i === 0 ? ' (circles, solid line)' : ' (squares, dashed line)'));
    }
    if (s.range) {
      items.push(el('li', {}, el('span', { class: `key band-${i}`, 'aria-hidden': 'true' }),
        `Shaded: ${m.series.length > 1 ? `${s.name.toLowerCase()} ` : ''}${rangeName(s.range)}, ${rangeText(s.range, m.unit)}`));
    }
  });
  (m.bands || []).forEach((b, k) => {
    items.push(el('li', {}, el('span', { class: `key severity-${k % 5}`, 'aria-hidden': 'true' }),
      `${b.low}–${b.high} ${b.label}`));
  });
  return el('ul', { class: 'trend-legend', 'aria-hidden': 'true' }, items);
}

/** The SVG: time on x, value on y, ranges shaded, one line and marks per series. */
function draw(m, label, describedBy) {
  let t0 = m.rows[0].t;
  let t1 = m.rows[m.rows.length - 1].t;
  if (t1 - t0 < DAY) { t0 -= DAY / 2; t1 += DAY / 2; }
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of m.series) {
    for (const p of s.points) { lo = Math.min(lo, p.v); hi = Math.max(hi, p.v); }
    if (s.range) {
      if (s.range.low !== null) lo = Math.min(lo, s.range.low);
      if (s.range.high !== null) hi = Math.max(hi, s.range.high);
    }
  }
  for (const b of m.bands || []) { lo = Math.min(lo, b.low); hi = Math.max(hi, b.high); }
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const padY = (hi - lo) * 0.08;
  lo -= padY;
  hi += padY;
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - ((v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);
  const f = (n) => n.toFixed(1);

  const many = m.rows.length > 200;
  const svg = svgEl('svg', {
    viewBox: `0 0 ${W} ${H}`, class: many ? 'trend-chart dense' : 'trend-chart', role: 'img', 'aria-label': label,
    preserveAspectRatio: 'xMidYMid meet', focusable: 'false',
  });
  if (describedBy) svg.setAttribute('aria-describedby', describedBy);
  // Reference ranges, behind everything.
  m.series.forEach((s, i) => {
    if (!s.range) return;
    const top = y(s.range.high !== null ? s.range.high : hi);
    const bottom = y(s.range.low !== null ? s.range.low : lo);
    svg.append(svgEl('rect', {
      class: `band band-${i}`, x: PAD.left, y: f(top), width: W - PAD.left - PAD.right,
      height: f(Math.max(0, bottom - top)), 'data-series': i,
    }));
  });
  // A questionnaire's severity bands, each shaded a step darker and labelled at the right.
  (m.bands || []).forEach((b, k) => {
    const top = y(b.high + 0.5);
    const bottom = y(b.low - 0.5);
    const g = svgEl('g', { class: 'severity', 'data-band': b.label, 'aria-hidden': 'true' });
    g.append(svgEl('rect', {
      class: `severity-${k % 5}`, x: PAD.left, y: f(top), width: W - PAD.left - PAD.right,
      height: f(Math.max(0, bottom - top)),
    }));
    const tx = svgEl('text', { class: 'severity-label', x: W - PAD.right - 4, y: f(top + 12), 'text-anchor': 'end' });
    tx.textContent = b.label;
    g.append(tx);
    svg.append(g);
  });
  // Axes and grid.
  const axes = svgEl('g', { class: 'axes', 'aria-hidden': 'true' });
  for (const v of ticks(lo, hi)) {
    axes.append(svgEl('line', { class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: f(y(v)), y2: f(y(v)) }));
    const tx = svgEl('text', { x: PAD.left - 6, y: f(y(v) + 4), 'text-anchor': 'end' });
    tx.textContent = showNumber(v);
    axes.append(tx);
  }
  const span = t1 - t0;
  const fmt = span > 180 * DAY ? monthFormat : (span > 2 * DAY ? dayFormat : dateTimeFormat);
  for (let k = 0; k <= 4; k += 1) {
    const t = t0 + (span * k) / 4;
    const tx = svgEl('text', {
      x: f(x(t)), y: H - PAD.bottom + 18, 'text-anchor': k === 0 ? 'start' : (k === 4 ? 'end' : 'middle'),
    });
    tx.textContent = fmt.format(new Date(t));
    axes.append(tx);
  }
  axes.append(svgEl('line', { class: 'axis', x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom }));
  axes.append(svgEl('line', { class: 'axis', x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }));
  svg.append(axes);
  // Series: a line through the points, and a mark per point with its own title.
  m.series.forEach((s, i) => {
    const g = svgEl('g', { class: `series series-${i}`, 'data-series': i, 'data-name': s.name });
    if (s.points.length > 1) {
      // The line breaks across a long gap (no readings for five times the usual interval
      // and at least two weeks): nothing was measured there, so nothing is drawn.
      const gaps = [];
      for (let k = 1; k < s.points.length; k += 1) gaps.push(s.points[k].t - s.points[k - 1].t);
      const usual = [...gaps].sort((a, b) => a - b)[Math.floor(gaps.length / 2)];
      const breakAt = Math.max(5 * usual, 14 * DAY);
      let d = '';
      s.points.forEach((p, k) => {
        const jump = k === 0 || gaps[k - 1] > breakAt;
        d += `${jump ? 'M' : 'L'}${f(x(p.t))} ${f(y(p.v))}`;
      });
      g.append(svgEl('path', { class: 'line', d }));
    }
    const r = many ? 2 : 3.5;
    for (const p of s.points) {
      const px = x(p.t);
      const py = y(p.v);
      const severity = m.bands ? bandOf(m.bands, p.v) : null;
      const out = against(p.v, s.range, rangeName(s.range));
      const outside = out + (severity ? ` (${severity.label})` : '');
      const cls = out ? 'point out' : 'point';
      const mark = i === 0
        ? svgEl('circle', { class: cls, cx: f(px), cy: f(py), r })
        : svgEl('rect', { class: cls, x: f(px - r), y: f(py - r), width: 2 * r, height: 2 * r });
      const title = svgEl('title', {});
      title.textContent = `${showDateTime(p.t)}: ${m.series.length > 1 ? `${s.name.toLowerCase()} ` : ''}`
        + `${withUnit(showNumber(p.v), m.unit)}${outside}`;
      mark.append(title);
      g.append(mark);
    }
    svg.append(g);
  });
  return svg;
}
