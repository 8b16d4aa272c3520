// The trend charts' data functions (node/web/charts.js), run under Node.js by
// tests/tests/web_charts.rs: reference ranges read from their text, malformed entries and
// values skipped (never thrown on), the limits MAX_POINTS, MAX_MEASURES and MAX_NAME, and
// two years of daily readings grouped quickly. Drawing is checked in a real browser
// (tests/tests/web_browser.rs). Prints "ok N" and exits 0, or throws.
import assert from 'node:assert/strict';
import { pathToFileURL } from 'node:url';

const charts = await import(pathToFileURL(process.argv[2]).href);
const {
  parseRange, buildMeasures, limitMeasures, summary, toNumber, MAX_POINTS, MAX_MEASURES, MAX_NAME,
} = charts;
let checks = 0;
const eq = (a, b, what) => { assert.deepEqual(a, b, what); checks += 1; };

// Reference ranges as labs and FHIR imports write them.
for (const [text, want] of [
  ['3.5-5.3', { low: 3.5, high: 5.3 }],
  ['3.5 - 5.3 mmol/L', { low: 3.5, high: 5.3 }],
  ['3.5–5.3', { low: 3.5, high: 5.3 }],
  ['3.5 to 5.3', { low: 3.5, high: 5.3 }],
  ['3.5 mmol/L to 5.3 mmol/L', { low: 3.5, high: 5.3 }],
  ['-2 - 2', { low: -2, high: 2 }],
  ['… to 5.3', { low: null, high: 5.3 }],
  ['< 5.3', { low: null, high: 5.3 }],
  ['<=5.3', { low: null, high: 5.3 }],
  ['> 60', { low: 60, high: null }],
  ['3.5 mmol/L to …', { low: 3.5, high: null }],
  ['5.3-3.5', null],
  ['normal', null],
  ['', null],
  [null, null],
  [42, null],
  ['1'.repeat(500), null],
]) eq(parseRange(text), want, `range ${JSON.stringify(text)}`);

for (const [v, want] of [[4.1, 4.1], ['4.1', 4.1], [' 12 ', 12], ['<5', null], ['4,1', null], ['1e400', null],
  [NaN, null], [Infinity, null], ['', null], [null, null], [{}, null], [[1], null], ['0x10', null]]) {
  eq(toNumber(v), want, `number ${String(v)}`);
}

// Malformed entries and values: skipped and counted, never thrown on.
const day = (i) => new Date(Date.UTC(2024, 0, 1) + i * 86_400_000).toISOString();
const bp = (i, s, d, extra = {}) => ({
  id: `e-${i}`, category: 'vital-signs', created: '2026-12-01T00:00:00Z',
  body: { systolic: { value: s, unit: 'mm[Hg]' }, diastolic: { value: d, unit: 'mm[Hg]' }, 'measured-at': day(i), ...extra },
});
const messy = [
  null, 7, 'text', [], { category: 'vital-signs' }, { category: 'vital-signs', body: 'x' },
  { category: 'vital-signs', body: [1, 2] },
  bp(0, 120, 80), bp(1, 'high', 'low'), bp(2, 130, null), bp(3, NaN, 85),
  { ...bp(4, 125, 82), deleted: true },
  { id: 'e-t', category: 'vital-signs', created: 'not a time', body: { 'heart-rate': { value: 70, unit: '/min' }, 'measured-at': 'yesterday' } },
  { id: 'e-h', category: 'vital-signs', created: '2026-12-01T00:00:00Z', body: { 'heart-rate': { value: 71, unit: '/min' }, position: 'sitting', comment: 'after a walk' } },
  { id: 'l1', category: 'lab-results', created: '2026-01-01T00:00:00Z', body: { test: 'Potassium', result: '4.1', unit: 'mmol/L', 'reference-range': '3.5-5.3' } },
  { id: 'l2', category: 'lab-results', created: '2026-02-01T00:00:00Z', body: { test: ' potassium ', result: 'haemolysed', unit: 'mmol/L' } },
  { id: 'l3', category: 'lab-results', created: '2026-03-01T00:00:00Z', body: { test: 'POTASSIUM', result: '5.9 mmol/L', unit: 'mmol/L', 'reference-range': '3.6 to 5.0' } },
  { id: 'l4', category: 'lab-results', created: '2026-03-01T00:00:00Z', body: { test: 42, result: '1' } },
  { id: 'q1', category: 'questionnaires', created: '2026-03-01T00:00:00Z', body: { questionnaire: 'PHQ-9', score: 'seven' } },
  { id: 'q2', category: 'questionnaires', created: '2026-04-01T00:00:00Z', body: { questionnaire: 'PHQ-9', score: 7, completed: '2026-03-30T10:00:00Z' } },
  { id: 'x', category: 'problems', created: '2026-04-01T00:00:00Z', body: { problem: 'CKD' } },
];
const ms = buildMeasures(messy);
const by = Object.fromEntries(ms.map((m) => [m.key, m]));
eq(ms.map((m) => m.key), ['vital|blood-pressure|mm[Hg]', 'vital|heart-rate|/min', 'lab|potassium|mmol/L', 'questionnaire|phq-9'], 'measures and their order');
const pressure = by['vital|blood-pressure|mm[Hg]'];
eq(pressure.series.map((s) => s.points.map((p) => p.v)), [[120, 130], [80, 85]], 'blood pressure: numbers only');
eq(pressure.rows.length, 3, 'a reading with one number is still a row');
eq(pressure.skipped, 1, 'the reading with no number is counted');
eq(pressure.series[0].range, { low: 90, high: 120, adult: true }, 'the adult systolic range');
const hr = by['vital|heart-rate|/min'];
eq(hr.rows.length, 1, 'heart rate: the reading with no time is left out');
eq(hr.skipped, 1, 'and counted');
eq(hr.rows[0].t, Date.parse('2026-12-01T00:00:00Z'), 'no measured-at: when it was written');
const k = by['lab|potassium|mmol/L'];
eq(k.series[0].points.map((p) => p.v), [4.1, 5.9], 'potassium: names grouped, the unit after a number read');
eq(k.skipped, 1, 'the haemolysed sample is counted');
eq(k.series[0].range.low, 3.6, 'the newest reference range is shaded');
assert.match(k.rangeNote, /2 different reference ranges/);
const same = buildMeasures([
  { id: 'a', category: 'lab-results', created: '2026-01-01T00:00:00Z', body: { test: 'Sodium', result: '140', 'reference-range': '133-146' } },
  { id: 'b', category: 'lab-results', created: '2026-02-01T00:00:00Z', body: { test: 'Sodium', result: '139', 'reference-range': '133 to 146 mmol/L' } },
]);
eq(same[0].rangeNote, '', 'one range written two ways is one range');
assert.match(summary(k), /Latest 5\.9 mmol\/L on .*\(above the reference range\)/);
assert.match(summary(pressure), /^Blood pressure: 3 readings from .* Latest —\/85 mmHg on .*above the typical adult range for diastolic/);
eq(by['questionnaire|phq-9'].series[0].points.map((p) => p.t), [Date.parse('2026-03-30T10:00:00Z')], 'completed is the time');
eq(buildMeasures(null), [], 'no entries');
eq(buildMeasures({}), [], 'not a list');

// The patient page's items carry times as milliseconds.
const [ms1] = buildMeasures([{ id: 'p', category: 'vital-signs', created: 1_790_000_000_000, body: { spo2: { value: 97, unit: '%' } } },
  { id: 'p2', category: 'vital-signs', created: -5, body: { spo2: { value: 98, unit: '%' } } },
  { id: 'p3', category: 'vital-signs', created: 1e308, body: { spo2: { value: 99, unit: '%' } } }]);
eq(ms1.rows.map((r) => r.t), [1_790_000_000_000], 'a time in milliseconds; a negative or impossible one left out');
eq(ms1.skipped, 2, 'and counted');
assert.match(summary(ms1), /^Oxygen saturation \(SpO2\): 1 reading\. Latest 97% on /);

// Junk of every shape (seeded): never thrown on; every charted point is a finite number at
// a finite time.
let seed = 42;
const rand = (n) => { seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648; return seed % n; };
const junk = () => [null, undefined, true, 0, -1, 1e308, NaN, Infinity, '', '12', ' 7.5 ', 'x', '1e999',
  [], [1], {}, { value: '3' }, { value: 3 }, { value: 3, unit: 7 }, { value: { value: 1 } },
  '2026-01-01T00:00:00Z', 'not-a-date', 1_700_000_000_000, -1e20][rand(24)];
const cats = [...charts.CHART_CATEGORIES, 'problems', 42, null];
const fields = ['systolic', 'diastolic', 'heart-rate', 'steps', 'measured-at', 'test', 'result', 'unit',
  'reference-range', 'questionnaire', 'score', 'completed', 'collected', 'odd'];
const mess = [];
for (let i = 0; i < 3000; i += 1) {
  const body = {};
  for (let k = rand(6); k > 0; k -= 1) body[fields[rand(fields.length)]] = junk();
  mess.push({ id: junk(), category: cats[rand(cats.length)], created: junk(), time: junk(), body: rand(10) ? body : junk() });
}
const messMeasures = buildMeasures(mess, () => 'Odd');
for (const m of messMeasures) {
  for (const sr of m.series) {
    for (const p of sr.points) assert.ok(Number.isFinite(p.v) && Number.isFinite(p.t), JSON.stringify(p));
  }
  assert.equal(typeof summary(m), 'string');
}
checks += 1;

// MAX_POINTS: the newest kept, the rest counted.
const lots = [];
for (let i = 0; i < MAX_POINTS + 3; i += 1) lots.push(bp(i, 100 + (i % 50), 70));
const [capped] = buildMeasures(lots.reverse());
eq(capped.rows.length, MAX_POINTS, 'at most MAX_POINTS rows');
eq(capped.dropped, 3, 'the oldest left out');
eq(capped.rows[0].t, Date.parse(day(3)), 'the newest kept, in time order');
eq(capped.series[1].points.length, MAX_POINTS, 'series follow the rows');

// MAX_NAME: a test name is cut to MAX_NAME characters.
const [long] = buildMeasures([{ id: 'l', category: 'lab-results', created: '2026-01-01T00:00:00Z', body: { test: 'x'.repeat(MAX_NAME + 50), result: '1' } }]);
eq(long.title.length, MAX_NAME, 'a long test name is cut');

// MAX_MEASURES: the rest are named, not drawn.
const tests = [];
for (let i = 0; i < MAX_MEASURES + 5; i += 1) {
  tests.push({ id: `t${i}`, category: 'lab-results', created: '2026-01-01T00:00:00Z', body: { test: `Test ${String(i).padStart(3, '0')}`, result: '1' } });
}
const { shown, more } = limitMeasures(buildMeasures(tests));
eq([shown.length, more.length], [MAX_MEASURES, 5], 'at most MAX_MEASURES charts');

// Two years of daily readings (vital signs and a wearable) group in well under a second.
// A questionnaire's severity bands, from its published definition in the same entries.
{
  const { questionnaireBands, bandOf, MAX_DEFINITION, MAX_BANDS } = charts;
  const band = (low, high, label) => ({ url: 'band', extension: [{ url: 'low', valueInteger: low },
    { url: 'high', valueInteger: high }, { url: 'label', valueString: label }] });
  const def = (bands, extra = {}) => JSON.stringify({ resourceType: 'Questionnaire', title: 'GAD-7', ...extra,
    extension: [{ url: charts.SCORING, extension: [{ url: 'method', valueCode: 'sum' }, ...bands] }] });
  const four = [band(0, 4, 'minimal'), band(5, 9, 'mild'), band(10, 14, 'moderate'), band(15, 21, 'severe')];
  eq(questionnaireBands(def(four)).bands.map((b) => b.label), ['minimal', 'mild', 'moderate', 'severe'], 'bands read');
  eq(questionnaireBands('{not json'), null, 'malformed definition');
  eq(questionnaireBands(JSON.stringify({ resourceType: 'Patient', title: 'x' })), null, 'not a questionnaire');
  eq(questionnaireBands(`${def(four)}${' '.repeat(MAX_DEFINITION)}`), null, 'oversize definition');
  eq(questionnaireBands(def([band(5, 1, 'upside down'), band('0', 4, 'text'), band(0, 4, '')])).bands, [], 'malformed bands skipped');
  eq(questionnaireBands(def(Array.from({ length: MAX_BANDS + 3 }, (_, i) => band(i, i, `b${i}`)))).bands.length, MAX_BANDS, 'MAX_BANDS');
  eq(bandOf(questionnaireBands(def(four)).bands, 12).label, 'moderate', 'band of 12');
  eq(bandOf(questionnaireBands(def(four)).bands, 30), null, 'beyond the bands');
  const ms = buildMeasures([
    { id: 'd', category: 'questionnaires', created: day(0), body: { questionnaire: 'GAD-7', definition: def(four) } },
    { id: 'r1', category: 'questionnaires', created: day(1), body: { questionnaire: 'GAD-7', score: 3 } },
    { id: 'r2', category: 'questionnaires', created: day(2), body: { questionnaire: 'gad-7 ', score: 16 } },
    { id: 'r3', category: 'questionnaires', created: day(3), body: { questionnaire: 'PHQ-9', score: 7 } },
  ]);
  const gad = ms.find((m) => m.key === 'questionnaire|gad-7');
  eq([gad.rows.length, gad.skipped, gad.bands.length], [2, 0, 4], 'the definition is not a reading; bands attached');
  eq(ms.find((m) => m.key === 'questionnaire|phq-9').bands, null, 'no definition, no bands');
  assert.ok(summary(gad).includes('Latest 16 on') && summary(gad).includes('(severe)'), summary(gad));
  assert.ok(summary(gad).includes('Severity bands: 0 to 4 minimal, 5 to 9 mild'), summary(gad));
  checks += 2;
}

const years = [];
for (let i = 0; i < 730; i += 1) {
  years.push(bp(i, 110 + (i % 40), 65 + (i % 25), { 'heart-rate': { value: 60 + (i % 30), unit: '/min' } }));
  years.push({ id: `w${i}`, category: 'wearables', created: day(i), body: { steps: 4000 + i, 'heart-rate': { value: 70, unit: '/min' } } });
}
const t0 = performance.now();
const grouped = buildMeasures(years);
const took = performance.now() - t0;
eq(grouped.find((m) => m.key === 'vital|blood-pressure|mm[Hg]').rows.length, 730, '730 readings');
eq(grouped.find((m) => m.key === 'vital|heart-rate|/min').rows.length, 1460, 'heart rate from both categories');
eq(grouped.find((m) => m.key === 'vital|steps|').rows.length, 730, 'steps');
assert.ok(took < 1000, `grouping took ${took} ms`);
checks += 1;

process.stdout.write(`ok ${checks}\n`);
