// The browser-only patient's page. Everything that needs the key or the content runs in
// this page, in the protocol core built to WebAssembly (/pkg/cophr_wasm.js): opening the
// key backup with the passphrase, signing sync proofs, verifying and opening what arrives,
// sealing and signing what is written. The host is asked only for sealed bytes
// (POST /sync, application/cbor) and never receives the passphrase, the key or any content
// in clear. Nothing is stored in the browser: locking (or closing the tab) forgets all.
//
// Documents: a file is sealed here segment by segment (64 KiB slices of the File, each
// sealed in WebAssembly under the document's own random key), and only the sealed bytes go
// to the host (PUT /sync/blobs/{hash}, with a proof signed here for that one upload), then
// the entry naming them is written sealed and pushed. Opening fetches the sealed bytes
// (GET /sync/blobs/{hash}), opens each segment here and checks their hash before a preview
// or a download is made from them (a blob: URL, revoked when done).

import init, {
  Patient, DocumentSealer, backupRequest, backupFromResponse, categories,
} from '/pkg/cophr_wasm.js';
import { buildMeasures, limitMeasures, renderTrend, MAX_MEASURES } from '/charts.js';

const $ = (id) => document.getElementById(id);
let patient = null;
let catalogue = [];
/** The blob: URLs of the document shown or downloaded, revoked when it is closed. */
let urls = [];

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : String(c ?? ''));
  return el;
}

function status(text) { $('status').textContent = text; }

function showError(e) {
  const box = $('error');
  box.textContent = (e && e.message) ? e.message : String(e);
  box.hidden = false;
}

function clearError() { $('error').hidden = true; $('error').textContent = ''; }

/** One sync message to the host; its answer's bytes. */
async function post(bytes) {
  const r = await fetch('/sync', {
    method: 'POST',
    headers: { 'content-type': 'application/cbor' },
    body: bytes,
  });
  if (!r.ok) {
    let msg = `the host answered HTTP ${r.status}`;
    try { msg = (await r.json()).error.message || msg; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return new Uint8Array(await r.arrayBuffer());
}

/** Runs one sync with the host to its end (the state machine decides every step). */
async function syncWithHost(push) {
  patient.startSync(push);
  for (;;) {
    const request = patient.nextRequest(Date.now());
    if (!request) break;
    try {
      patient.handleResponse(await post(request));
    } catch (e) {
      patient.handleFailure(String(e.message || e));
    }
  }
  const report = JSON.parse(patient.syncReport());
  if (report.error) throw new Error(`Sync with the host failed: ${report.error}`);
  return report;
}

function catTitle(name) {
  const c = catalogue.find((x) => x.name === name);
  return c ? c.title : name;
}

function render() {
  const state = JSON.parse(patient.items(Date.now()));
  const items = $('items');
  items.replaceChildren();
  items.className = 'items';
  const byCat = new Map();
  for (const i of state.items) {
    if (!byCat.has(i.category)) byCat.set(i.category, []);
    byCat.get(i.category).push(i);
  }
  for (const [cat, list] of byCat) {
    items.append(h('h2', {}, catTitle(cat)));
    items.append(h('ul', { 'data-category': cat }, list.map((i) => h('li', { 'data-id': i.id },
      i.summary,
      i.flag ? h('span', { class: 'flag' }, ` [flagged: ${i.flag}]`) : '',
      h('span', { class: 'meta' }, ` — ${new Date(i.updated).toISOString().slice(0, 10)}`),
      i.body && i.body.file && i.body.file.hash ? h('span', { class: 'doc-actions' },
        ' ',
        h('button', { type: 'button', class: 'secondary doc-show', 'data-id': i.id }, 'Show'),
        ' ',
        h('button', { type: 'button', class: 'secondary doc-download', 'data-id': i.id }, 'Download'))
        : ''))));
  }
  if (state.items.length === 0) items.append(h('p', {}, 'Nothing in your record yet.'));
  $('counts').textContent = `${state.entries} entries held in this page; `
    + `${state.items.length} items; ${state.locked} sealed under keys you were not given.`;
  if ($('trends-toggle').getAttribute('aria-expanded') === 'true') renderTrends(state.items);
}

/**
 * Trend charts of the vital signs, measurements, lab results and questionnaire scores held
 * in this page (charts.js; docs/care-team.md "Charts"), each with a table behind it.
 */
function renderTrends(items) {
  const box = $('trends');
  box.replaceChildren();
  const fieldTitle = (cat, name) => {
    const c = catalogue.find((x) => x.name === cat);
    const f = c && (c.fields || []).find((x) => x.name === name);
    return f ? f.title : name;
  };
  const measures = buildMeasures(items, fieldTitle);
  if (measures.length === 0) {
    box.append(h('p', {}, 'There are no vital signs, measurements, lab results or questionnaire scores to chart yet.'));
    return;
  }
  const { shown, more } = limitMeasures(measures);
  for (const m of shown) box.append(renderTrend(m, 'h3'));
  if (more.length) {
    box.append(h('p', { class: 'help' }, `${more.length} more measures are not charted here (at most ${MAX_MEASURES}).`));
  }
}

function toggleTrends() {
  const b = $('trends-toggle');
  const open = b.getAttribute('aria-expanded') !== 'true';
  b.setAttribute('aria-expanded', open ? 'true' : 'false');
  b.textContent = open ? 'Hide trends' : 'Show trends';
  $('trends').hidden = !open;
  if (open && patient) renderTrends(JSON.parse(patient.items(Date.now())).items);
  else $('trends').replaceChildren();
}

function fieldKind(f) {
  const t = f.type;
  if (t && typeof t === 'object') return Object.keys(t)[0];
  return t || 'text';
}

function renderFields() {
  const cat = catalogue.find((c) => c.name === $('category').value);
  const box = $('fields');
  box.replaceChildren();
  for (const f of (cat && cat.fields) || []) {
    const kind = fieldKind(f);
    if (kind === 'binary' || kind === 'answers' || kind === 'document') continue;
    const id = `f-${f.name}`;
    const label = h('label', { for: id }, f.title || f.name, f.required ? ' (required)' : '');
    let control;
    if (kind === 'code') {
      control = h('select', { id, name: f.name }, h('option', { value: '' }, '—'),
        (f.codes || []).map((c) => h('option', { value: c }, c)));
    } else if (kind === 'long-text' || kind === 'text-list') {
      control = h('textarea', { id, name: f.name, rows: '2' });
    } else if (kind === 'integer' || kind === 'decimal' || kind === 'quantity') {
      control = h('input', { id, name: f.name, type: 'number', step: 'any' });
    } else if (kind === 'bool') {
      control = h('select', { id, name: f.name }, h('option', { value: '' }, '—'),
        h('option', { value: 'true' }, 'yes'), h('option', { value: 'false' }, 'no'));
    } else {
      control = h('input', { id, name: f.name, type: 'text' });
    }
    const wrap = h('div', { class: 'field', 'data-kind': kind }, label, control);
    if (kind === 'quantity' && f.unit) wrap.append(h('span', { class: 'unit' }, ` ${f.unit}`));
    box.append(wrap);
  }
}

function readBody() {
  const cat = catalogue.find((c) => c.name === $('category').value);
  const body = {};
  for (const f of (cat && cat.fields) || []) {
    const el = document.getElementById(`f-${f.name}`);
    if (!el) continue;
    const raw = el.value.trim();
    if (raw === '') continue;
    const kind = fieldKind(f);
    if (kind === 'integer' || kind === 'decimal') body[f.name] = Number(raw);
    else if (kind === 'quantity') body[f.name] = { value: Number(raw), unit: f.unit };
    else if (kind === 'bool') body[f.name] = raw === 'true';
    else if (kind === 'text-list') body[f.name] = raw.split('\n').map((s) => s.trim()).filter(Boolean);
    else body[f.name] = raw;
  }
  return body;
}

async function unlock(ev) {
  ev.preventDefault();
  clearError();
  const button = $('unlock-button');
  button.disabled = true;
  try {
    status('Fetching your sealed key backup from this host…');
    const info = await (await fetch('/sync')).json();
    if (!info.server) throw new Error((info.error && info.error.message) || 'This host does not serve records to browsers.');
    const server = Uint8Array.from(atob(info.server), (c) => c.charCodeAt(0));
    const backup = backupFromResponse(await post(backupRequest($('actor').value)));
    status('Opening it with your passphrase, in this page…');
    const passphrase = $('passphrase').value;
    $('passphrase').value = '';
    patient = new Patient(backup, passphrase, $('record').value, server);
    status('Fetching your record (sealed) and opening it here…');
    let report;
    try {
      report = await syncWithHost(false);
    } catch (e) {
      if (!$('record').value.trim() && /no access|not held/.test(String(e.message))) {
        throw new Error(`${e.message}. If your key was replaced after a recovery, give your `
          + 'record id under "Another record" (cophr records shows it).');
      }
      throw e;
    }
    $('who').textContent = `Signed in as ${patient.actor}`;
    $('who').hidden = false;
    $('lock').hidden = false;
    $('unlock').hidden = true;
    $('app').hidden = false;
    render();
    status(`Your record is open in this page (${report.pulled} entries fetched).`);
    $('app-title').focus();
  } catch (e) {
    patient = null;
    showError(e);
    status('');
  } finally {
    button.disabled = false;
  }
}

async function add(ev) {
  ev.preventDefault();
  clearError();
  try {
    const category = $('category').value;
    const id = patient.add(category, JSON.stringify(readBody()), Date.now());
    status('Sealed and signed here; sending it to your host…');
    const report = await syncWithHost(true);
    if (report.rejected && report.rejected.length) {
      throw new Error(`The host refused it: ${report.rejected.map((r) => r.reason).join('; ')}`);
    }
    render();
    $('add-form').reset();
    $('category').value = category;
    renderFields();
    status(`Added ${id} (${report.pushed} entries sent, sealed).`);
  } catch (e) {
    showError(e);
  }
}


function progress(value) {
  const bar = $('attach-progress');
  bar.hidden = value === null;
  bar.value = value || 0;
}

function hostError(status, text) {
  try { return JSON.parse(text).error.message || `the host answered HTTP ${status}`; } catch (_) {
    return `the host answered HTTP ${status}`;
  }
}

/** Hands the host a document's sealed bytes, reporting progress from `from` to 1. */
function upload(sealed, body, from) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', `/sync/blobs/${sealed.hash}`);
    xhr.setRequestHeader('content-type', 'application/octet-stream');
    xhr.setRequestHeader('x-cophr-proof', patient.blobProof('put', sealed.hash, sealed.size, Date.now()));
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && e.total > 0) progress(from + (1 - from) * (e.loaded / e.total));
    };
    xhr.onload = () => {
      if (xhr.status === 201) resolve();
      else reject(new Error(`The host did not keep the sealed file: ${hostError(xhr.status, xhr.responseText)}`));
    };
    xhr.onerror = () => reject(new Error('The upload to the host failed.'));
    xhr.send(body);
  });
}

async function attach(ev) {
  ev.preventDefault();
  clearError();
  const file = $('attach-file').files[0];
  const title = $('attach-doc-title').value.trim();
  if (!file || !title) {
    showError(new Error('Choose a file and give it a title.'));
    return;
  }
  let sealer = null;
  try {
    sealer = new DocumentSealer(file.size);
    const n = sealer.segments;
    const parts = [];
    progress(0);
    status(`Sealing ${file.name} here…`);
    for (let i = 0; i < n; i += 1) {
      const start = sealer.segmentStart(i);
      const bytes = new Uint8Array(await file.slice(start, start + sealer.segmentLength(i)).arrayBuffer());
      parts.push(sealer.seal(bytes));
      progress(0.5 * ((i + 1) / n));
    }
    const sealed = JSON.parse(sealer.finish());
    status(`Sending ${file.name} to your host, sealed…`);
    await upload(sealed, new Blob(parts, { type: 'application/octet-stream' }), 0.5);
    parts.length = 0;
    const id = patient.addDocument(sealer, title, $('attach-date').value, Date.now());
    const report = await syncWithHost(true);
    if (report.rejected && report.rejected.length) {
      throw new Error(`The host refused it: ${report.rejected.map((r) => r.reason).join('; ')}`);
    }
    render();
    $('attach-form').reset();
    progress(null);
    status(`Attached ${title} (${sealed['media-type']}) as ${id}, sealed.`);
  } catch (e) {
    progress(null);
    showError(e);
  } finally {
    if (sealer) sealer.free();
  }
}

/** Fetches item `id`'s document from the host, sealed, and opens it here. */
async function openDocument(id) {
  const opener = patient.document(id, Date.now());
  try {
    const about = JSON.parse(opener.about());
    status(`Fetching ${about.title} (sealed) and opening it here…`);
    const r = await fetch(`/sync/blobs/${about.hash}?size=${about.stored}`, {
      headers: { 'x-cophr-proof': patient.blobProof('get', about.hash, about.stored, Date.now()) },
      cache: 'no-store',
    });
    if (!r.ok) throw new Error(`The host did not send the file: ${hostError(r.status, await r.text())}`);
    const reader = r.body.getReader();
    const parts = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const plain = opener.push(value);
      if (plain.length) parts.push(plain);
    }
    opener.finish();
    return { about, blob: new Blob(parts, { type: about['media-type'] || 'application/octet-stream' }) };
  } finally {
    opener.free();
  }
}

const EXTENSIONS = {
  'application/pdf': 'pdf', 'image/jpeg': 'jpg', 'image/png': 'png', 'application/dicom': 'dcm',
  'text/plain': 'txt',
};

function fileName(about) {
  const base = (about.title || 'document').replace(/[^A-Za-z0-9 ._-]/g, '_').slice(0, 100) || 'document';
  const ext = EXTENSIONS[about['media-type']];
  return ext && !base.toLowerCase().endsWith(`.${ext}`) ? `${base}.${ext}` : base;
}

function size(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1024) return `${Math.floor(n / 1024)} KiB`;
  return `${n} bytes`;
}

function closeDocument() {
  for (const u of urls) URL.revokeObjectURL(u);
  urls = [];
  $('document-preview').replaceChildren();
  $('document').hidden = true;
}

async function showDocument(id) {
  clearError();
  try {
    const { about, blob } = await openDocument(id);
    closeDocument();
    const url = URL.createObjectURL(blob);
    urls.push(url);
    const type = about['media-type'];
    $('document-title').textContent = about.title;
    $('document-about').textContent = `${type}, ${size(about.size)}; opened and checked in this page.`;
    let preview;
    if (type.startsWith('image/')) preview = h('img', { src: url, alt: about.title });
    else if (type === 'application/pdf') preview = h('iframe', { src: url, title: about.title });
    else preview = h('p', {}, 'No preview for this type: download it.');
    $('document-preview').replaceChildren(preview);
    $('document').hidden = false;
    $('document-title').focus();
    status(`Showing ${about.title}.`);
  } catch (e) {
    showError(e);
  }
}

async function downloadDocument(id) {
  clearError();
  try {
    const { about, blob } = await openDocument(id);
    const url = URL.createObjectURL(blob);
    urls.push(url);
    const a = h('a', { href: url, download: fileName(about), hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    status(`Downloaded ${about.title} (${size(about.size)}), opened and checked in this page.`);
  } catch (e) {
    showError(e);
  }
}

function onItemsClick(ev) {
  const b = ev.target.closest('button[data-id]');
  if (!b) return;
  if (b.classList.contains('doc-show')) showDocument(b.dataset.id);
  else if (b.classList.contains('doc-download')) downloadDocument(b.dataset.id);
}

function lock() {
  closeDocument();
  if (patient) patient.free();
  patient = null;
  $('items').replaceChildren();
  $('trends').replaceChildren();
  $('trends').hidden = true;
  $('trends-toggle').setAttribute('aria-expanded', 'false');
  $('trends-toggle').textContent = 'Show trends';
  $('app').hidden = true;
  $('unlock').hidden = false;
  $('who').hidden = true;
  $('lock').hidden = true;
  status('Locked: nothing of your record or key is left in this page.');
}

async function main() {
  await init({ module_or_path: '/pkg/cophr_wasm_bg.wasm' });
  catalogue = JSON.parse(categories());
  const select = $('category');
  for (const c of catalogue) {
    if (c.name === 'documents') continue;
    select.append(h('option', { value: c.name }, c.title));
  }
  select.addEventListener('change', renderFields);
  renderFields();
  $('unlock-form').addEventListener('submit', unlock);
  $('add-form').addEventListener('submit', add);
  $('attach-form').addEventListener('submit', attach);
  $('items').addEventListener('click', onItemsClick);
  $('document-close').addEventListener('click', closeDocument);
  $('lock').addEventListener('click', lock);
  $('trends-toggle').addEventListener('click', toggleTrends);
  document.body.dataset.ready = 'true';
}

main().catch(showError);
