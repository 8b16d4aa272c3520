// The browser-only patient's page. Everything that needs the key or the content runs in
// this page, in the protocol core built to WebAssembly (/pkg/cophr_wasm.js): opening the
// key backup with the passphrase, signing sync proofs, verifying and opening what arrives,
// sealing and signing what is written. The host is asked only for sealed bytes
// (POST /sync, application/cbor) and never receives the passphrase, the key or any content
// in clear. Nothing is stored in the browser: locking (or closing the tab) forgets all.

import init, { Patient, backupRequest, backupFromResponse, categories } from '/pkg/cophr_wasm.js';

const $ = (id) => document.getElementById(id);
let patient = null;
let catalogue = [];

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
      h('span', { class: 'meta' }, ` — ${new Date(i.updated).toISOString().slice(0, 10)}`)))));
  }
  if (state.items.length === 0) items.append(h('p', {}, 'Nothing in your record yet.'));
  $('counts').textContent = `${state.entries} entries held in this page; `
    + `${state.items.length} items; ${state.locked} sealed under keys you were not given.`;
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

function lock() {
  if (patient) patient.free();
  patient = null;
  $('items').replaceChildren();
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
  $('lock').addEventListener('click', lock);
  document.body.dataset.ready = 'true';
}

main().catch(showError);
