// cophr web app: a plain ES module (no build step, nothing fetched from elsewhere) that talks
// only to this node's JSON API under /api/v1. The API token is kept in sessionStorage and sent
// as a bearer header; it never goes into a URL, and neither does record content. Nothing is
// written to the browser's log. All data goes on the page with textContent, never as HTML.

import {
  buildMeasures, limitMeasures, renderTrend, CHART_CATEGORIES, MAX_MEASURES,
} from '/charts.js';

const API = '/api/v1';
// Every API route the app calls, in one place (node/tests/web.rs checks each against the
// OpenAPI document): name: [method, path under /api/v1].
const ROUTES = {
  whoami: ['GET', '/whoami'],
  categories: ['GET', '/categories'],
  records: ['GET', '/records'],
  schemas: ['GET', '/records/{rid}/schemas'],
  createRecord: ['POST', '/records'],
  record: ['GET', '/records/{rid}'],
  entries: ['GET', '/records/{rid}/entries'],
  addEntry: ['POST', '/records/{rid}/entries'],
  entry: ['GET', '/records/{rid}/entries/{eid}'],
  history: ['GET', '/records/{rid}/entries/{eid}/history'],
  document: ['GET', '/records/{rid}/entries/{eid}/document'],
  attach: ['POST', '/records/{rid}/documents'],
  threadAttach: ['POST', '/records/{rid}/threads/{eid}/attachments'],
  annotate: ['POST', '/records/{rid}/entries/{eid}/annotations'],
  timeline: ['GET', '/records/{rid}/timeline'],
  grants: ['GET', '/records/{rid}/grants'],
  invitations: ['GET', '/records/{rid}/invitations'],
  invite: ['POST', '/records/{rid}/invitations'],
  confirmInvitation: ['POST', '/records/{rid}/invitations/{iid}/confirm'],
  declineInvitation: ['POST', '/records/{rid}/invitations/{iid}/decline'],
  acceptInvitation: ['POST', '/invitations/accept'],
  revoke: ['POST', '/records/{rid}/grants/{gid}/revoke'],
  audit: ['GET', '/records/{rid}/audit'],
  export: ['GET', '/records/{rid}/export'],
  shares: ['GET', '/records/{rid}/shares'],
  createShare: ['POST', '/records/{rid}/shares'],
  endShare: ['DELETE', '/records/{rid}/shares/{sid}'],
  devices: ['GET', '/records/{rid}/devices'],
  addDevice: ['POST', '/records/{rid}/devices'],
  removeDevice: ['POST', '/records/{rid}/devices/{actor}/remove'],
  guardians: ['GET', '/records/{rid}/guardians'],
  setGuardians: ['PUT', '/records/{rid}/guardians'],
  approveRecovery: ['POST', '/records/{rid}/recovery-approvals'],
  recoveryRequest: ['GET', '/recovery-request'],
  recover: ['POST', '/recover'],
  keyBackup: ['POST', '/key-backup'],
  release: ['POST', '/records/{rid}/entries/{eid}/release'],
  subscriptions: ['GET', '/records/{rid}/subscriptions'],
  subscribe: ['POST', '/records/{rid}/subscriptions'],
  unsubscribe: ['DELETE', '/records/{rid}/subscriptions/{subid}'],
  notifications: ['GET', '/records/{rid}/notifications'],
  readNotifications: ['POST', '/records/{rid}/notifications/read'],
  notificationStream: ['GET', '/records/{rid}/notifications/stream'],
  threads: ['GET', '/records/{rid}/threads'],
  thread: ['GET', '/records/{rid}/threads/{eid}'],
  threadRead: ['POST', '/records/{rid}/threads/{eid}/read'],
  worklist: ['GET', '/worklist'],
  worklistCount: ['GET', '/worklist/count'],
  members: ['GET', '/records/{rid}/members'],
  addMember: ['POST', '/records/{rid}/members'],
  removeMember: ['POST', '/records/{rid}/members/{actor}/remove'],
  memberProof: ['GET', '/records/{rid}/members/{actor}/proof'],
  memberships: ['GET', '/memberships'],
  useMembership: ['POST', '/memberships'],
  builtInQuestionnaires: ['GET', '/questionnaires/built-in'],
  questionnaires: ['GET', '/records/{rid}/questionnaires'],
  publishQuestionnaire: ['POST', '/records/{rid}/questionnaires'],
  assignQuestionnaire: ['POST', '/records/{rid}/questionnaires/{eid}/assign'],
  answerQuestionnaire: ['POST', '/records/{rid}/questionnaires/{eid}/responses'],
  amendEntry: ['PUT', '/records/{rid}/entries/{eid}'],
  reminders: ['GET', '/records/{rid}/reminders'],
};
const TOKEN_KEY = 'cophr-token';
const LEVELS = ['view', 'annotate', 'write', 'delete'];
const LEVEL_TEXT = {
  view: 'view — see entries',
  annotate: 'annotate — see entries and add notes',
  write: 'write — see, add and edit entries',
  delete: 'delete — see, add, edit and delete entries',
};
const ACTION_TEXT = {
  view: 'viewed', add: 'added', edit: 'changed', delete: 'deleted', annotate: 'annotated',
  grant: 'granted access', revoke: 'revoked access', export: 'exported', import: 'imported',
  move: 'moved the record', 'audit-read': 'read the audit trail', profile: 'updated a profile',
  device: 'changed a device', keys: 'changed guardians or keys',
};
const KIND_TEXT = {
  create: 'created', amend: 'amended', delete: 'deleted', annotate: 'annotated',
};
// A grant's status as the API names it (computed once, by protocol's GrantStatus).
const GRANT_STATUS_TEXT = {
  active: 'active', 'not-yet-valid': 'not yet valid', expired: 'expired', revoked: 'revoked',
  'parent-revoked': 'revoked (the grant it came from was revoked)', void: 'void',
};
const DEVICE_STATUS_TEXT = { active: 'active', removed: 'removed', void: 'void' };
// What a recovery request, a guardian's approval and an actor id start with.
const REQUEST_PREFIX = 'cophr://recover/';
const APPROVAL_PREFIX = 'cophr://approval/';
const ACTOR_RE = /^a-[a-z2-7]{52}$/;

const state = {
  token: null,
  me: null,           // GET /whoami
  categories: [],     // GET /categories
  extensions: [],     // GET /records/{rid}/schemas: the open record's extension schemas
  records: [],        // GET /records
  rid: null,          // the open record
  summary: null,      // GET /records/{rid}
  tab: 'record',
  category: null,     // the category shown in the record tab
  trendsFocus: null,  // the category whose trends to scroll to when the trends tab opens
  unread: 0,          // unread notifications in the open record
  stream: null,       // the AbortController of the open notification stream
  home: 'records',    // the home tab: 'records' or 'worklist'
  shared: 0,          // GET /worklist/count: records shared with this identity
  worklist: { q: '', page: 0, selected: 0, rows: [] },
};

// ------------------------------------------------------------------------------------------
// Small helpers.

const $ = (id) => document.getElementById(id);

/** Builds an element: h('p', {class: 'x'}, 'text', child, ...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'for') el.htmlFor = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = true;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const enc = encodeURIComponent;

function when(t) {
  if (!t) return '';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return h('time', { datetime: t }, d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  }));
}

function person(p) {
  if (!p) return 'unknown';
  if (typeof p === 'string') return p;
  const extra = [p.role, p.organisation].filter(Boolean).join(', ');
  const who = extra ? `${p.name || shortId(p.actor)} (${extra})` : (p.name || shortId(p.actor));
  // Verified (by whom, at which level) or self-asserted, by this node's trust list.
  return p.assurance && p.assurance.shown ? `${who} [${p.assurance.shown}]` : who;
}

function shortId(id) {
  if (!id) return '';
  const s = String(id);
  return s.length > 16 ? `${s.slice(0, 12)}…` : s;
}

// --- The record's people: names for the actor ids entries carry. ---------------------------
// Every replica holds the record's administrative stream (profiles and grants), so any
// reader may name the people in it (docs/care-team.md "Web app").

/** Loads the record's people: the patient, every grantee and organisations' joined members. */
async function loadPeople() {
  const map = new Map();
  const p = state.summary && state.summary.patient;
  if (p && p.actor) map.set(p.actor, p);
  let grants = [];
  try {
    const got = await api('grants', { rid: state.rid });
    if (Array.isArray(got)) grants = got;
  } catch { /* names fall back to ids */ }
  for (const g of grants) {
    if (g.grantee && g.grantee.actor && !map.has(g.grantee.actor)) map.set(g.grantee.actor, g.grantee);
    for (const m of g.members || []) {
      if (m.member && m.member.actor && !map.has(m.member.actor)) map.set(m.member.actor, m.member);
    }
  }
  state.people = { rid: state.rid, map, grants };
  return state.people;
}

/** An actor by name (role, organisation, assurance) when the record names them, else a short id;
 * a value that is not an actor id (a name, as imported) as it is. */
function nameOf(actor) {
  if (!actor) return '—';
  const known = state.people && state.people.rid === state.rid && state.people.map.get(actor);
  if (known) return person(known);
  return ACTOR_RE.test(actor) ? shortId(actor) : String(actor);
}

/** The people whose grant in effect covers `category` at `level` or above, once each by name. */
function grantedPeople(category, level) {
  const out = new Map();
  for (const g of (state.people && state.people.grants) || []) {
    const covers = g.categories === 'all' || (Array.isArray(g.categories) && g.categories.includes(category));
    if (g.status === 'active' && covers && levelRank(g.level) >= levelRank(level)
      && g.grantee && !out.has(g.grantee.actor)) out.set(g.grantee.actor, g.grantee);
  }
  return out;
}

/** Check boxes choosing among `people` (a Map of actor to person), named `name`. */
function peopleChecks(name, people, chosen = new Set()) {
  return [...people].map(([actor, p], i) => h('li', {},
    h('input', { type: 'checkbox', id: `${name}-${i}`, name, value: actor, checked: chosen.has(actor) }),
    h('label', { for: `${name}-${i}` }, person(p))));
}

/**
 * The built-in categories and the open record's extension categories whose schemas it
 * defines as data (docs/extensions.md): forms, grant forms and titles are made from both.
 */
function allCategories() {
  const ext = (state.extensions || []).filter((e) => !state.categories.some((c) => c.name === e.name));
  return state.categories.concat(ext);
}

function catTitle(name) {
  const c = allCategories().find((x) => x.name === name);
  if (c && c.title) return c.title;
  const s = (state.summary && state.summary.categories || []).find((x) => x.name === name);
  return s && s.title ? s.title : name;
}

function fieldTitle(cat, name) {
  const c = allCategories().find((x) => x.name === cat);
  const f = c && (c.fields || []).find((x) => x.name === name);
  return (f && f.title) || name.replace(/-/g, ' ').replace(/^./, (m) => m.toUpperCase());
}

function levelRank(level) {
  return LEVELS.indexOf(level);
}

// ------------------------------------------------------------------------------------------
// Status, errors and the API.

function setStatus(text) {
  $('status').textContent = text;
}

function showError(err) {
  const box = $('error');
  box.replaceChildren();
  let text;
  if (err instanceof ApiError) {
    text = err.status ? `${err.message} (${err.status} ${err.code})` : err.message;
  } else {
    text = err && err.message ? err.message : String(err);
  }
  append(box, [h('strong', {}, 'Error: '), text]);
  box.hidden = false;
  setStatus('');
}

function clearError() {
  const box = $('error');
  box.hidden = true;
  box.replaceChildren();
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Calls one of ROUTES: fills the path's {parameters} from `params` (URL-encoded), adds the
 * `query` (ids, categories and limits only — never record content or the token) and sends
 * `body` as JSON.
 */
async function api(route, params = {}, { query, body, stream, lastId, signal } = {}) {
  const [method, template] = ROUTES[route];
  let path = template.replace(/\{(\w+)\}/g, (_, k) => enc(params[k]));
  if (query) path += `?${new URLSearchParams(query)}`;
  const headers = { Accept: stream ? 'text/event-stream' : 'application/json' };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (lastId) headers['Last-Event-ID'] = lastId;
  const init = { method, headers, cache: 'no-store', credentials: 'omit', signal };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(API + path, init);
  } catch {
    throw new ApiError(0, 'network', 'The node did not answer. Is `cophr node run` still running?');
  }
  if (!res.ok) {
    let code = `http_${res.status}`;
    let message = res.statusText || 'The request failed';
    try {
      const j = await res.json();
      if (j && j.error) {
        code = j.error.code || code;
        message = j.error.message || message;
      }
    } catch { /* not JSON: keep the status text */ }
    if (res.status === 401) {
      message = 'The node did not accept this token. Print the right one with `cophr token` '
        + '(with the same --home as the running node).';
    }
    throw new ApiError(res.status, code, message);
  }
  // An event stream: the response itself, read as it comes.
  if (stream) return res;
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.blob();
}

/** Runs an action, showing its errors; returns its result or undefined. */
async function attempt(fn) {
  clearError();
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401 && state.me) {
      signOut();
    }
    showError(err);
    return undefined;
  }
}

// ------------------------------------------------------------------------------------------
// Sign in and out.

async function signIn(token) {
  state.token = token;
  const me = await attempt(() => api('whoami'));
  if (!me) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $('token').setAttribute('aria-invalid', 'true');
    $('token').focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $('token').removeAttribute('aria-invalid');
  $('token').value = '';
  state.me = me;
  const who = $('who');
  who.replaceChildren(h('span', {}, 'Signed in as '), h('strong', {}, me.name || shortId(me.actor)),
    ` (${[me.role, me.organisation].filter(Boolean).join(', ')})`,
    me.device ? ` on ${me.device}` : '');
  who.hidden = false;
  $('sign-out').hidden = false;
  $('sign-in').hidden = true;
  $('app').hidden = false;
  setStatus(`Signed in as ${me.name || 'you'}.`);
  const cats = await attempt(() => api('categories'));
  state.categories = Array.isArray(cats) ? cats : [];
  await showHome();
}

function signOut() {
  stopNotifications();
  state.token = null;
  state.me = null;
  state.rid = null;
  state.summary = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $('who').hidden = true;
  $('who').replaceChildren();
  $('sign-out').hidden = true;
  $('app').hidden = true;
  $('view').replaceChildren();
  $('sign-in').hidden = false;
  setStatus('Signed out.');
  $('token').focus();
}

// ------------------------------------------------------------------------------------------
// Home: the records this identity can open.

async function loadRecords() {
  const recs = await attempt(() => api('records'));
  state.records = Array.isArray(recs) ? recs : [];
  return recs !== undefined;
}

async function showHome() {
  if (!(await loadRecords())) return;
  const mine = state.records.find((r) => r.is_mine);
  if (mine && state.records.length === 1) {
    await openRecord(mine.record);
    return;
  }
  await renderRecordList();
}

async function renderRecordList() {
  state.rid = null;
  state.summary = null;
  const title = $('app-title');
  const view = $('view');
  view.replaceChildren();
  // The Worklist tab is shown when records held here are shared with this identity.
  const count = await attempt(() => api('worklistCount'));
  state.shared = (count && count.total) || 0;
  if (state.shared > 0) {
    view.append(homeTabs());
    if (state.home === 'worklist') {
      title.textContent = 'Worklist';
      await renderWorklist(view);
      return;
    }
  }
  title.textContent = 'Records';
  const mine = state.records.find((r) => r.is_mine);
  const shared = state.records.filter((r) => !r.is_mine);
  if (mine) {
    view.append(h('section', { class: 'card', 'aria-labelledby': 'mine-title' },
      h('h2', { id: 'mine-title' }, 'My record'),
      h('p', {}, h('button', { type: 'button', id: 'open-mine', onclick: () => openRecord(mine.record) },
        'Open my record'))));
  } else {
    view.append(h('section', { class: 'card', 'aria-labelledby': 'mine-title' },
      h('h2', { id: 'mine-title' }, 'My record'),
      h('p', {}, 'You have no record of your own on this node.'),
      h('p', {}, h('button', { type: 'button', onclick: createRecord }, 'Create my record'))));
  }
  const list = h('section', { class: 'card', 'aria-labelledby': 'shared-title' },
    h('h2', { id: 'shared-title' }, 'Patients who shared their record with you'));
  if (shared.length === 0) {
    list.append(h('p', {}, 'No one has shared a record with this identity yet.'));
  } else {
    const table = h('table', {},
      h('caption', { class: 'sr-only' }, 'Shared records and what you may see and write'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Patient'),
        h('th', { scope: 'col' }, 'What you may see and write'), h('th', { scope: 'col' }, 'Open'))));
    const body = h('tbody');
    for (const r of shared) {
      body.append(h('tr', {},
        h('th', { scope: 'row' }, r.patient_name || shortId(r.record),
          h('br'), h('code', { class: 'id' }, shortId(r.record))),
        h('td', {}, levelSummary(r)),
        h('td', {}, h('button', { type: 'button', onclick: () => openRecord(r.record) },
          `Open ${r.patient_name || 'record'}`))));
    }
    table.append(body);
    list.append(table);
  }
  view.append(list);
  view.append(acceptForm());
  view.append(await membershipsSection());
  view.append(recoverSection());
  title.focus();
}

// ------------------------------------------------------------------------------------------
// The worklist: the records shared with this identity, one row each (GET /worklist; each row
// shown is audited by the node as a view of that record's demographics). Keyboard: `/`
// focuses the search, arrow keys move between rows, Enter opens the selected record.

function homeTabs() {
  const tabs = [['records', 'Records'], ['worklist', `Worklist (${state.shared})`]];
  return h('nav', { 'aria-label': 'Home sections', class: 'tabs' },
    h('ul', {}, tabs.map(([id, label]) => h('li', {}, h('button', {
      type: 'button', id: `home-${id}`, 'aria-current': state.home === id ? 'page' : null,
      onclick: () => { state.home = id; renderRecordList(); },
    }, label)))));
}

const CHANGE_TEXT = (changed) => Object.entries(changed || {})
  .map(([c, n]) => `${n} ${catTitle(c).toLowerCase()}`).join(', ');

async function renderWorklist(view) {
  const wl = state.worklist;
  const panel = h('section', { class: 'card', id: 'worklist-panel', 'aria-labelledby': 'worklist-title' },
    h('h2', { id: 'worklist-title' }, 'Patients shared with you'),
    h('p', { class: 'help', id: 'worklist-help' },
      'Type / to search by name or national number; ↑ and ↓ move between patients; Enter opens one. '
      + 'Each row you see is recorded in that patient\u2019s audit trail.'));
  const search = h('input', {
    id: 'worklist-search', type: 'search', value: wl.q, maxlength: 64, autocomplete: 'off',
    spellcheck: 'false', 'aria-describedby': 'worklist-help', 'aria-controls': 'worklist-rows',
  });
  panel.append(h('div', { class: 'field' }, h('label', { for: 'worklist-search' }, 'Search'), search));
  const list = h('div', { id: 'worklist-list' });
  panel.append(list);
  view.append(panel);
  let timer = null;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => { wl.q = search.value; wl.page = 0; wl.selected = 0; loadWorklist(list); }, 250);
  });
  search.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowDown' || ev.key === 'Enter') {
      ev.preventDefault();
      clearTimeout(timer);
      const go = async () => {
        if (wl.q !== search.value) { wl.q = search.value; wl.page = 0; wl.selected = 0; await loadWorklist(list); }
        if (ev.key === 'Enter' && wl.rows.length === 1) openWorklistRow(0);
        else focusWorklistRow(0);
      };
      go();
    }
  });
  await loadWorklist(list);
  search.focus();
}

async function loadWorklist(list) {
  const wl = state.worklist;
  const page = await attempt(() => api('worklist', {}, { query: { q: wl.q, page: wl.page } }));
  if (!page) return;
  wl.rows = page.rows || [];
  list.replaceChildren();
  if (wl.rows.length === 0) {
    list.append(h('p', { id: 'worklist-empty' }, wl.q ? 'No patient shared with you matches that search.'
      : 'No records are shared with you on this node.'));
    return;
  }
  const table = h('table', { id: 'worklist-rows', role: 'grid', 'aria-rowcount': page.total },
    h('caption', { class: 'sr-only' }, 'Patients shared with you'),
    h('thead', {}, h('tr', {}, ['Patient', 'National number', 'Changed since you looked',
      'Unreviewed results', 'Open tasks'].map((c) => h('th', { scope: 'col' }, c)))));
  const body = h('tbody');
  wl.rows.forEach((r, i) => {
    const name = r.demographics_name || r.name || shortId(r.record);
    const changed = r.changed_total > 0
      ? [`${r.changed_total}: ${CHANGE_TEXT(r.changed)}`, r.looked ? '' : ' (never opened)'] : '—';
    const tr = h('tr', {
      tabindex: i === wl.selected ? '0' : '-1', 'data-record': r.record, class: 'worklist-row',
      'aria-selected': i === wl.selected ? 'true' : 'false',
      onclick: () => openWorklistRow(i),
      onkeydown: (ev) => worklistKey(ev, i),
    },
    h('th', { scope: 'row' }, name),
    h('td', {}, r.national_number || '—'),
    h('td', {}, changed),
    h('td', {}, String(r.unreviewed_results)),
    h('td', {}, String(r.open_tasks)));
    body.append(tr);
  });
  table.append(body);
  list.append(h('div', { class: 'scroll' }, table));
  const pages = Math.max(1, Math.ceil(page.total / page.page_size));
  const go = (p) => async () => { wl.page = p; wl.selected = 0; await loadWorklist(list); focusWorklistRow(0); };
  list.append(h('p', { class: 'meta' }, `${page.total} patients · page ${page.page + 1} of ${pages} `,
    page.page > 0 ? h('button', { type: 'button', class: 'secondary small', onclick: go(page.page - 1) }, 'Previous') : null,
    page.page + 1 < pages ? h('button', { type: 'button', class: 'secondary small', onclick: go(page.page + 1) }, 'Next') : null));
}

function worklistRows() {
  return [...document.querySelectorAll('#worklist-rows tbody tr')];
}

function focusWorklistRow(i) {
  const rows = worklistRows();
  if (rows.length === 0) return;
  const n = Math.max(0, Math.min(i, rows.length - 1));
  state.worklist.selected = n;
  rows.forEach((tr, j) => {
    tr.tabIndex = j === n ? 0 : -1;
    tr.setAttribute('aria-selected', j === n ? 'true' : 'false');
  });
  rows[n].focus();
}

function worklistKey(ev, i) {
  if (ev.key === 'ArrowDown') { ev.preventDefault(); focusWorklistRow(i + 1); }
  else if (ev.key === 'ArrowUp') {
    ev.preventDefault();
    if (i === 0) $('worklist-search').focus(); else focusWorklistRow(i - 1);
  } else if (ev.key === 'Home') { ev.preventDefault(); focusWorklistRow(0); }
  else if (ev.key === 'End') { ev.preventDefault(); focusWorklistRow(worklistRows().length - 1); }
  else if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); openWorklistRow(i); }
}

async function openWorklistRow(i) {
  const r = state.worklist.rows[i];
  if (!r) return;
  state.worklist.selected = i;
  // Opening the record (GET /records/{rid}) marks it looked at: its changes start again.
  await openRecord(r.record);
}

// `/` focuses the worklist's search from anywhere on the page but a text field.
document.addEventListener('keydown', (ev) => {
  if (ev.key !== '/' || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)) return;
  const search = $('worklist-search');
  if (search) { ev.preventDefault(); search.focus(); search.select(); }
});

// Someone invited you to their record: paste the link they gave you.
function acceptForm() {
  const form = h('form', { id: 'accept-form', class: 'card', novalidate: true, 'aria-labelledby': 'accept-title' },
    h('h2', { id: 'accept-title' }, 'Accept an invitation'),
    h('div', { class: 'field' },
      h('label', { for: 'accept-link' }, 'The invitation link you were given'),
      h('input', { id: 'accept-link', name: 'link', type: 'text', required: true, spellcheck: 'false',
        autocomplete: 'off', placeholder: 'cophr://invite/…', 'aria-describedby': 'accept-help' }),
      h('p', { id: 'accept-help', class: 'help' },
        'Your name, role and any verified identity are sent to the patient, who confirms before you see anything.')),
    h('button', { type: 'submit' }, 'Accept invitation'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    const link = $('accept-link').value.trim();
    if (!link.startsWith('cophr://invite/')) {
      $('accept-link').setAttribute('aria-invalid', 'true');
      $('accept-link').focus();
      showError(new Error('An invitation link starts with cophr://invite/.'));
      return;
    }
    $('accept-link').removeAttribute('aria-invalid');
    const r = await attempt(() => api('acceptInvitation', {}, { body: { link } }));
    if (!r) return;
    setStatus(`Invitation from ${r.from} accepted. They will confirm; then their record appears here.`);
  });
  return form;
}

function levelSummary(r) {
  const levels = r.level_by_category || {};
  const names = Object.keys(levels);
  if (names.length === 0) return 'Nothing at the moment.';
  return h('ul', { class: 'plain' }, names.map((c) => h('li', {},
    `${catTitle(c)}: `, h('span', { class: `level level-${levels[c]}` }, levels[c]))));
}

async function createRecord() {
  const r = await attempt(() => api('createRecord', {}, { body: {} }));
  if (!r) return;
  setStatus('Your record was created.');
  await loadRecords();
  await openRecord(r.record);
}

// ------------------------------------------------------------------------------------------
// One record.

function recordInfo() {
  return state.records.find((r) => r.record === state.rid) || null;
}

function isPatient() {
  const s = state.summary;
  if (s && s.my_access && typeof s.my_access.is_patient === 'boolean') return s.my_access.is_patient;
  const r = recordInfo();
  return !!(r && r.is_mine);
}

/** This identity's level in a category ('' when none). The patient holds every right. */
function myLevel(cat) {
  if (isPatient()) return 'delete';
  const r = recordInfo();
  const levels = (r && r.level_by_category) || {};
  return levels[cat] || levels.all || '';
}

function writableCategories() {
  return allCategories().filter((c) => levelRank(myLevel(c.name)) >= levelRank('write'));
}

async function openRecord(rid) {
  stopNotifications();
  state.rid = rid;
  state.tab = 'record';
  state.category = null;
  await loadExtensions();
  await renderRecord();
}

/** The open record's extension schemas (none if they cannot be read). */
async function loadExtensions() {
  state.extensions = [];
  try {
    const got = await api('schemas', { rid: state.rid });
    if (Array.isArray(got)) state.extensions = got;
  } catch { /* a relay or a reader without access: no extension forms */ }
}

async function refreshSummary() {
  const s = await attempt(() => api('record', { rid: state.rid }));
  if (s) state.summary = s;
  return s;
}

async function renderRecord() {
  const s = await refreshSummary();
  if (!s) return;
  const patient = isPatient();
  const name = (s.patient && s.patient.name) || shortId(s.record);
  $('app-title').textContent = patient ? `My record — ${name}` : `${name}'s record`;
  const view = $('view');
  view.replaceChildren();
  const back = state.records.length > 1 || !patient
    ? h('button', { type: 'button', class: 'secondary small', onclick: async () => {
      if (await loadRecords()) renderRecordList();
    } }, '← All records')
    : null;
  view.append(h('p', { class: 'meta record-line' }, back, 'Record id ',
    h('code', { class: 'id' }, s.record), patient ? '' : ' · shared with you'));
  // Allergies are highlighted with the alerts: fetched when the record has any we may see.
  let allergies = [];
  if ((s.categories || []).some((c) => c.name === 'allergies' && c.count > 0)
    && !(s.alerts || []).some((e) => e.category === 'allergies')) {
    const got = await attempt(() => api('entries', { rid: state.rid }, { query: { category: 'allergies' } }));
    if (Array.isArray(got)) allergies = got.filter((e) => !e.deleted);
  }
  view.append(h('div', { class: 'overview' }, aboutMe(s), alerts(s, allergies)));

  const tabs = patient
    ? [['record', 'Record'], ['timeline', 'Timeline'], ['trends', 'Trends'], ['add', 'Add an entry'],
      ['appointments', 'Appointments'], ['tasks', 'Referrals & tasks'],
      ['questionnaires', 'Questionnaires'], ['notifications', 'Notifications'],
      ['conversations', 'Conversations'],
      ['access', 'Who has access'], ['audit', 'Who viewed what'], ['export', 'Export'],
      ['share', 'Emergency summary'], ['devices', 'Devices & recovery'],
      ...(isOrganisation(s) ? [['staff', 'Staff']] : [])]
    : [['record', 'Record'], ['timeline', 'Timeline'], ['trends', 'Trends'], ['add', 'Add an entry'],
      ['appointments', 'Appointments'], ['tasks', 'Referrals & tasks'],
      ['questionnaires', 'Questionnaires'], ['notifications', 'Notifications'],
      ['conversations', 'Conversations'],
      ['mine', 'What I may see and write'], ['approve', 'Approve a key recovery']];
  const nav = h('nav', { 'aria-label': 'Record sections', class: 'tabs' },
    h('ul', {}, tabs.map(([id, label]) => h('li', {}, h('button', {
      type: 'button', id: `tab-${id}`, 'aria-current': state.tab === id ? 'page' : null,
      onclick: () => {
        setStatus('');
        clearError();
        showTab(id);
      },
    }, label, id === 'notifications' ? unreadBadge() : null)))));
  view.append(nav, h('section', { id: 'panel', class: 'card', 'aria-labelledby': 'panel-title' }));
  await showTab(state.tab, false);
  startNotifications();
}

function aboutMe(s) {
  const items = s.about_me || [];
  const box = h('section', { class: 'card about', 'aria-labelledby': 'about-title' },
    h('h2', { id: 'about-title' }, 'About me'));
  if (items.length === 0) {
    box.append(h('p', {}, isPatient()
      ? 'You have not written the top three things to know about you yet.'
      : (myLevel('about-me')
        ? 'The patient has not written anything about themselves yet.'
        : 'The patient has not shared this part of the record with you.')));
    if (isPatient()) {
      box.append(h('button', { type: 'button', class: 'secondary', onclick: () => {
        state.addCategory = 'about-me';
        showTab('add');
      } }, 'Write about me'));
    }
    return box;
  }
  const e = items[0];
  const b = e.body || {};
  const things = ['thing-1', 'thing-2', 'thing-3'].map((k) => b[k]).filter(Boolean);
  if (things.length) {
    box.append(h('p', {}, 'The top things to know about me:'),
      h('ol', { class: 'things' }, things.map((t) => h('li', {}, String(t)))));
  } else if (e.summary) {
    box.append(h('p', {}, e.summary));
  }
  if (b.summary) box.append(h('p', { class: 'about-summary' }, String(b.summary)));
  box.append(h('p', { class: 'meta' }, 'Written by ', person(e.author), ', ', when(e.time)));
  return box;
}

function alerts(s, allergies) {
  const items = [...(s.alerts || []), ...allergies];
  const box = h('section', { class: 'card alerts', 'aria-labelledby': 'alerts-title' },
    h('h2', { id: 'alerts-title' }, h('span', { class: 'icon', 'aria-hidden': 'true' }, '⚠ '),
      'Alerts and allergies'));
  const hidden = ['alerts', 'allergies'].filter((c) => !myLevel(c)).map(catTitle);
  if (items.length === 0) {
    box.append(h('p', {}, hidden.length === 2
      ? 'The patient has not shared alerts or allergies with you.'
      : 'No alerts or allergies recorded.'));
    if (hidden.length === 1) box.append(h('p', { class: 'meta' }, `${hidden[0]}: not shared with you.`));
    return box;
  }
  if (hidden.length === 1) box.append(h('p', { class: 'meta' }, `${hidden[0]}: not shared with you.`));
  box.append(h('ul', { class: 'alert-list' }, items.map((e) => h('li', { class: 'alert-item' },
    h('strong', {}, `${catTitle(e.category)}: `), e.summary || '(no summary)',
    ['high', 'severe'].includes(e.body && (e.body.severity || e.body.criticality))
      ? [' ', h('span', { class: 'badge warn' }, 'high risk')] : '',
    h('span', { class: 'meta' }, ' — ', person(e.author))))));
  return box;
}

async function showTab(id, focus = true) {
  state.tab = id;
  for (const b of document.querySelectorAll('.tabs button')) {
    if (b.id === `tab-${id}`) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
  const panel = $('panel');
  if (!panel) return;
  panel.replaceChildren();
  const render = {
    record: renderCategories, timeline: renderTimeline, trends: renderTrends, add: renderAdd,
    access: renderAccess, audit: renderAudit, export: renderExport, mine: renderMine,
    share: renderShares, devices: renderDevices, approve: renderApprove,
    notifications: renderNotifications, staff: renderStaff, conversations: renderConversations,
    questionnaires: renderQuestionnaires, appointments: renderAppointments, tasks: renderTasks,
  }[id] || renderCategories;
  await render(panel);
  if (focus) {
    const heading = panel.querySelector('h2');
    if (heading) heading.focus();
  }
}

function panelHeading(text) {
  return h('h2', { tabindex: '-1', id: 'panel-title' }, text);
}

// --- The record by category. -------------------------------------------------------------

/** Categories in the display order of /categories (about me and alerts first). */
function displayOrder(list) {
  const rank = (name) => {
    const i = state.categories.findIndex((c) => c.name === name);
    return i < 0 ? state.categories.length : i;
  };
  return [...list].sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
}

async function renderCategories(panel) {
  const cats = displayOrder(state.summary.categories || []);
  panel.append(panelHeading('Record by category'));
  if (cats.length === 0) {
    panel.append(h('p', {}, 'There is nothing in this record that you may see yet.'));
    return;
  }
  const list = h('ul', { class: 'category-list' }, cats.map((c) => h('li', {},
    h('button', {
      type: 'button', class: 'category', 'data-category': c.name,
      'aria-pressed': state.category === c.name ? 'true' : 'false',
      onclick: async () => {
        state.category = c.name;
        await showTab('record', false);
        const t = $('entries-title');
        if (t) t.focus();
      },
    }, catTitle(c.name), ' ', h('span', { class: 'count' }, `(${c.count ?? 0})`)))));
  panel.append(list);
  if (!state.category) return;
  const title = catTitle(state.category);
  const section = h('section', { 'aria-labelledby': 'entries-title', class: 'entries' },
    h('h3', { id: 'entries-title', tabindex: '-1' }, title));
  panel.append(section);
  if (CHART_CATEGORIES.includes(state.category)) {
    const cat = state.category;
    section.append(h('p', {}, h('button', {
      type: 'button', class: 'secondary', id: 'see-trends', onclick: () => {
        state.trendsFocus = cat;
        setStatus('');
        clearError();
        showTab('trends');
      },
    }, `See ${title.toLowerCase()} as trends over time`)));
  }
  const entries = await attempt(() => api('entries', { rid: state.rid }, { query: { category: state.category } }));
  if (!entries) return;
  if (entries.length === 0) {
    section.append(h('p', {}, `No ${title.toLowerCase()} entries.`));
    return;
  }
  section.append(h('ul', { class: 'entry-list' }, entries.map((e) => h('li', {}, entryCard(e, 'h4')))));
}

function entryCard(e, hx, showCategory = false) {
  const badges = [];
  if (e.deleted) badges.push(h('span', { class: 'badge warn' }, 'deleted'));
  if (e.status === 'void') badges.push(h('span', { class: 'badge warn' }, 'void (written without valid access)'));
  if (e.flag) badges.push(h('span', { class: 'badge warn' }, `flagged: ${e.flag}`));
  if (e.versions > 1) badges.push(h('span', { class: 'badge' }, `version ${e.version} of ${e.versions}`));
  if (e.released) badges.push(h('span', { class: 'badge released' }, 'released to the patient by ', person(e.released.by)));
  return h('article', { class: 'entry', 'data-entry': e.id },
    h(hx, {}, showCategory ? `${catTitle(e.category)}: ` : '', e.summary || '(no summary)'),
    badges.length ? h('p', { class: 'badges' }, badges) : null,
    h('p', { class: 'meta' }, 'By ', person(e.author), e.device ? ` on ${e.device}` : '', ', ', when(e.time)),
    (e.annotations || []).length ? h('ul', { class: 'notes' }, e.annotations.map((a) => h('li', {},
      h('span', { class: 'note-label' }, 'Note'), ` by ${person(a.author)}: `, a.text)))
      : null,
    h('p', { class: 'actions' }, h('button', {
      type: 'button', class: 'secondary', onclick: () => renderEntry(e.id),
    }, 'Details and versions', h('span', { class: 'sr-only' }, ` of ${e.summary || 'entry'}`)),
    mayRelease(e) ? [' ', h('button', {
      type: 'button', class: 'secondary release', onclick: () => releaseResult(e),
    }, 'Release to the patient', h('span', { class: 'sr-only' }, ` (${e.summary || 'result'})`))] : null));
}

// --- Results released after review, and notifications. --------------------------------------
// A clinician with at least the annotate level on a result's category releases it: that is
// what notifies the patient. Notifications arrive as server-sent events, read with fetch (so
// the token goes in a header, never in a URL); they carry no content, only the event, the
// entry, its category and the time.

const RESULT_CATEGORIES = ['lab-results', 'investigations'];
const EVENT_TEXT = {
  'result-released': 'A result was released',
  'task-status': "A referral or task's status changed",
  'new-message': 'A new message',
  'reminder-due': 'An appointment reminder is due',
  'questionnaire-assigned': 'A questionnaire was assigned to you',
  'questionnaire-due': 'A questionnaire is due soon',
  'questionnaire-flag': 'An answer was flagged for review',
};
const EVENT_CATEGORIES = {
  'result-released': RESULT_CATEGORIES,
  'task-status': ['tasks'],
  'new-message': ['messages'],
  'reminder-due': ['appointments'],
  'questionnaire-assigned': ['tasks'],
  'questionnaire-due': ['tasks'],
  'questionnaire-flag': ['questionnaires'],
};

function mayRelease(e) {
  return RESULT_CATEGORIES.includes(e.category) && !e.released && !e.deleted && !isPatient()
    && levelRank(myLevel(e.category)) >= levelRank('annotate');
}

async function releaseResult(e) {
  const got = await attempt(() => api('release', { rid: state.rid, eid: e.current || e.id }, { body: {} }));
  if (!got) return;
  setStatus(`Released ${e.summary || 'the result'} to the patient.`);
  await showTab(state.tab, false);
}

function unreadBadge() {
  const b = h('span', { id: 'notif-unread', class: 'badge count' }, String(state.unread));
  b.hidden = state.unread === 0;
  b.setAttribute('aria-label', `${state.unread} unread`);
  return b;
}

function setUnread(n) {
  state.unread = Math.max(0, n);
  const b = $('notif-unread');
  if (!b) return;
  b.textContent = String(state.unread);
  b.setAttribute('aria-label', `${state.unread} unread`);
  b.hidden = state.unread === 0;
}

function stopNotifications() {
  if (state.stream) state.stream.abort();
  state.stream = null;
}

/** Opens the record's notification stream (once per record); reconnects after a drop,
 * from the last event id, so nothing is missed or shown twice. */
async function startNotifications() {
  if (state.stream || !state.rid || !state.token) return;
  const ctrl = new AbortController();
  state.stream = ctrl;
  const rid = state.rid;
  const first = await api('notifications', { rid }, { query: { limit: 1 } }).catch(() => null);
  if (first) setUnread(first.unread);
  // What was there before is counted already: the stream catches up after the newest.
  let last = first && first.items.length ? first.items[0].id : null;
  const seen = new Set();
  while (!ctrl.signal.aborted) {
    try {
      const res = await api('notificationStream', { rid }, { stream: true, lastId: last, signal: ctrl.signal });
      if (!res.body) throw new Error('no stream');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let id = null;
          let data = '';
          let event = 'message';
          for (const line of block.split('\n')) {
            if (line.startsWith('id:')) id = line.slice(3).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trim();
            else if (line.startsWith('event:')) event = line.slice(6).trim();
          }
          if (event !== 'notification' || !id) continue;
          last = id;
          if (seen.has(id)) continue;
          seen.add(id);
          let n = null;
          try { n = JSON.parse(data); } catch { continue; }
          if (!n.read) {
            setUnread(state.unread + 1);
            setStatus(`New notification: ${EVENT_TEXT[n.event] || n.event} (${catTitle(n.category)}).`);
          }
          if (state.tab === 'notifications' && $('notification-list')) listNotifications();
        }
      }
    } catch (err) {
      if (ctrl.signal.aborted) return;
    }
    // Dropped: try again shortly, from the last id.
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function renderNotifications(panel) {
  panel.append(panelHeading('Notifications'),
    h('p', { class: 'help' }, 'Choose what to be told about in this record. A notification says '
      + 'only what happened and where; open the entry to read it. Lab results are announced once '
      + 'a clinician has reviewed and released them.'));
  const subsBox = h('div', { id: 'subscriptions' });
  const form = h('form', { id: 'subscribe-form', novalidate: true },
    h('fieldset', {}, h('legend', {}, 'Tell me when'),
      Object.entries(EVENT_TEXT).map(([ev, text]) => {
        const visible = EVENT_CATEGORIES[ev].some((c) => myLevel(c));
        return h('p', {}, h('input', { type: 'checkbox', id: `sub-${ev}`, name: 'event', value: ev, disabled: !visible }),
          ' ', h('label', { for: `sub-${ev}` }, text, visible ? '' : ' (not shared with you)'));
      })),
    h('button', { type: 'submit' }, 'Subscribe'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const events = [...form.querySelectorAll('input[name=event]:checked')].map((i) => i.value);
    if (events.length === 0) {
      showError(new ApiError(0, 'invalid', 'Choose at least one thing to be told about.'));
      return;
    }
    // Only the categories shared with this identity (the node refuses any other).
    const categories = [...new Set(events.flatMap((e) => EVENT_CATEGORIES[e]))].filter((c) => myLevel(c));
    const got = await attempt(() => api('subscribe', { rid: state.rid }, { body: { events, categories } }));
    if (got) {
      setStatus('Subscribed.');
      listSubscriptions(subsBox);
    }
  });
  const list = h('div', { id: 'notification-list' });
  panel.append(form, subsBox, h('h3', {}, 'Received'),
    h('p', {}, h('button', { type: 'button', id: 'mark-all-read', class: 'secondary', onclick: async () => {
      const got = await attempt(() => api('readNotifications', { rid: state.rid }, { body: {} }));
      if (got) {
        setUnread(got.unread);
        listNotifications();
      }
    } }, 'Mark all read')), list);
  await listSubscriptions(subsBox);
  await listNotifications();
}

async function listSubscriptions(box) {
  const subs = await attempt(() => api('subscriptions', { rid: state.rid }));
  if (!subs) return;
  box.replaceChildren(subs.length === 0
    ? h('p', { class: 'meta' }, 'No subscriptions yet.')
    : h('ul', { class: 'subscriptions' }, subs.map((s) => h('li', {},
      s.events.map((e) => EVENT_TEXT[e] || e).join('; '), ' — ', s.categories.map(catTitle).join(', '), ' ',
      h('button', { type: 'button', class: 'secondary small', onclick: async () => {
        if (await attempt(() => api('unsubscribe', { rid: state.rid, subid: s.id }))) listSubscriptions(box);
      } }, 'Remove')))));
}

async function listNotifications() {
  const box = $('notification-list');
  if (!box) return;
  const got = await attempt(() => api('notifications', { rid: state.rid }, { query: { limit: 50 } }));
  if (!got) return;
  setUnread(got.unread);
  box.replaceChildren(got.items.length === 0
    ? h('p', {}, 'No notifications yet.')
    : h('ul', { class: 'notifications' }, got.items.map((n) => h('li', { class: n.read ? 'read' : 'unread', 'data-notification': n.id },
      n.read ? '' : h('span', { class: 'badge' }, 'new'), ' ',
      h('strong', {}, EVENT_TEXT[n.event] || n.event), ` in ${catTitle(n.category)}, `, when(n.time), ' ',
      h('button', { type: 'button', class: 'secondary small', onclick: async () => {
        await attempt(() => api('readNotifications', { rid: state.rid }, { body: { ids: [n.id] } }));
        renderEntry(n.entry);
      } }, 'Open')))));
}

// --- Conversations: threads private to their participants. -------------------------------

async function renderConversations(panel) {
  panel.append(panelHeading('Conversations'),
    h('p', { class: 'help' }, 'A conversation is private to the people in it: the record\'s '
      + 'rules show it to no one else, whatever they may read of your messages.'));
  const list = h('div', { id: 'thread-list' });
  const view = h('section', { id: 'thread-view', 'aria-labelledby': 'thread-title' });
  const canWrite = ['write', 'delete'].includes(myLevel('messages'));
  await loadPeople();
  panel.append(h('h3', {}, 'Your conversations'), list, view);
  if (canWrite) panel.append(startThreadForm(list, view));
  await listThreads(list, view);
}

async function listThreads(list, view) {
  const got = await attempt(() => api('threads', { rid: state.rid }));
  if (!got) return;
  list.replaceChildren(got.length === 0
    ? h('p', {}, 'No conversations yet.')
    : h('ul', { class: 'threads' }, got.map((t) => h('li', { 'data-thread': t.id },
      h('button', { type: 'button', class: 'secondary', onclick: () => openThread(t.id, list, view) },
        t.subject || 'Conversation'),
      ` with ${t.participants.map(person).join(', ')} · ${t.messages} message${t.messages === 1 ? '' : 's'} · last `,
      when(t.last), ' ',
      t.unread > 0 ? h('span', { class: 'badge', 'aria-label': `${t.unread} unread` }, `${t.unread} new`) : null))));
}

async function openThread(id, list, view) {
  // Opening a thread marks what others wrote read (a receipt each, which they see).
  await attempt(() => api('threadRead', { rid: state.rid, eid: id }, { body: {} }));
  const t = await attempt(() => api('thread', { rid: state.rid, eid: id }));
  if (!t) return;
  const last = t.messages[t.messages.length - 1];
  const text = h('textarea', { id: 'reply-text', name: 'text', rows: '3', required: true });
  const file = h('input', { id: 'reply-file', name: 'file', type: 'file' });
  const form = h('form', { id: 'reply-form', novalidate: true },
    h('p', {}, h('label', { for: 'reply-text' }, last.mine ? 'Reply' : `Reply to ${person(last.author)}`), h('br'), text),
    h('p', {}, h('label', { for: 'reply-file' }, 'Attach a file (optional: PDF, image, DICOM, OpenDocument, text)'), h('br'), file),
    h('button', { type: 'submit' }, 'Send'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!text.value.trim()) {
      showError(new ApiError(0, 'invalid', 'Write a message first.'));
      text.focus();
      return;
    }
    const chosen = file.files && file.files[0];
    const body = { text: text.value, thread: id, 'in-reply-to': last.version };
    const sent = chosen
      ? await attempt(() => sendAttachment(id, { text: text.value, 'in-reply-to': last.version }, chosen))
      : await attempt(() => api('addEntry', { rid: state.rid }, { body: { category: 'messages', body } }));
    if (sent) {
      setStatus('Sent.');
      await openThread(id, list, view);
      await listThreads(list, view);
      const again = $('reply-text');
      if (again) again.focus();
    }
  });
  view.replaceChildren(
    h('h3', { id: 'thread-title', tabindex: '-1' }, t.thread.subject || 'Conversation'),
    h('p', { class: 'meta' }, `With ${t.thread.participants.map(person).join(', ')}`),
    h('ol', { class: 'messages', 'aria-label': 'Messages, oldest first' }, t.messages.map((m) => h('li', {
      'data-message': m.id, class: m.mine ? 'mine' : null,
    },
    h('p', { class: 'meta' }, h('strong', {}, m.mine ? 'You' : person(m.author)), ', ', when(m.time),
      m.in_reply_to ? ` · in reply to ${shortId(m.in_reply_to)}` : ''),
    h('p', { class: 'message-text' }, m.text),
    m.attachment ? h('p', {}, h('button', { type: 'button', class: 'secondary small',
      onclick: () => renderEntry(m.id) }, 'Open the attachment')) : null,
    m.flag ? h('p', { class: 'flag' }, `Flagged: ${m.flag}`) : null,
    h('p', { class: 'meta read-by' }, m.read_by.length === 0
      ? 'Not read yet'
      : `Read by ${m.read_by.map(person).join(', ')}`)))),
    form);
  $('thread-title').focus();
  await listThreads(list, view);
}

/**
 * POSTs `file` as the request's body to `path` (a route's path, its parameters filled) with
 * `query` (the document upload and a message's attachment: the node never logs queries);
 * `onprogress` gets the percentage sent. Resolves with the 201's JSON, rejects with an
 * ApiError. (XMLHttpRequest, not fetch: it reports upload progress.)
 */
function upload(path, query, file, onprogress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `${API}${path}?${new URLSearchParams(query)}`);
    xhr.setRequestHeader('Authorization', `Bearer ${state.token}`);
    xhr.setRequestHeader('Accept', 'application/json');
    if (onprogress) {
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) onprogress(Math.floor((e.loaded * 100) / e.total));
      };
    }
    xhr.onerror = () => reject(new ApiError(0, 'network', 'The node did not answer. Is `cophr node run` still running?'));
    xhr.onload = () => {
      let j = null;
      try { j = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 201) resolve(j);
      else {
        reject(new ApiError(xhr.status, (j && j.error && j.error.code) || `http_${xhr.status}`,
          (j && j.error && j.error.message) || `The upload failed (${xhr.status}).`));
      }
    };
    xhr.send(file);
  });
}

/** Posts a message with `file` attached into the thread `id`. */
function sendAttachment(id, query, file) {
  const path = ROUTES.threadAttach[1].replace('{rid}', enc(state.rid)).replace('{eid}', enc(id));
  return upload(path, query, file);
}

function startThreadForm(list, view) {
  // Those who may read messages, by name (the gate refuses anyone else); anyone else by id.
  const readers = grantedPeople('messages', 'view');
  readers.delete(myActor());
  const boxes = peopleChecks('thread-person', readers);
  const form = h('form', { id: 'start-thread-form', novalidate: true },
    h('fieldset', {}, h('legend', {}, 'Start a conversation'),
      boxes.length ? h('fieldset', { id: 'thread-people' }, h('legend', {}, 'With (people who may read messages)'),
        h('ul', { class: 'checks' }, boxes)) : '',
      h('p', {}, h('label', { for: 'thread-with' }, boxes.length ? 'Others, by actor id (separated by commas)'
        : 'With (actor ids, separated by commas)'), h('br'),
      h('input', { id: 'thread-with', name: 'with', type: 'text', autocomplete: 'off', spellcheck: 'false' })),
      h('p', {}, h('label', { for: 'thread-subject' }, 'Subject'), h('br'),
        h('input', { id: 'thread-subject', name: 'subject', type: 'text' })),
      h('p', {}, h('label', { for: 'thread-text' }, 'Message'), h('br'),
        h('textarea', { id: 'thread-text', name: 'text', rows: '3', required: true }))),
    h('button', { type: 'submit' }, 'Start'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const picked = [...form.querySelectorAll('input[name=thread-person]:checked')].map((b) => b.value);
    const typed = form.elements.with.value.split(',').map((x) => x.trim()).filter(Boolean);
    const participants = [...new Set([...picked, ...typed])];
    const text = form.elements.text.value.trim();
    if (participants.length === 0 || !typed.every((a) => ACTOR_RE.test(a)) || !text) {
      showError(new ApiError(0, 'invalid', 'Choose at least one person (or name them by actor id, a-…), and write a message.'));
      return;
    }
    const body = { text, participants };
    if (form.elements.subject.value.trim()) body.subject = form.elements.subject.value.trim();
    const got = await attempt(() => api('addEntry', { rid: state.rid }, { body: { category: 'messages', body } }));
    if (got) {
      form.reset();
      setStatus('Conversation started.');
      await openThread(got.id, list, view);
    }
  });
  return form;
}

// --- One entry: its fields, versions and notes. ---------------------------------------------

function bodyList(cat, body) {
  if (!body || typeof body !== 'object') return h('p', {}, String(body ?? ''));
  const dl = h('dl', { class: 'fields' });
  for (const [k, v] of Object.entries(body)) {
    dl.append(h('dt', {}, fieldTitle(cat, k)), h('dd', {}, showValue(v)));
  }
  return dl;
}

/** A document stored apart, as a field shows it: its size (never its hash's key). */
function isDocumentFile(v) {
  return v && typeof v === 'object' && typeof v.hash === 'string' && 'size' in v;
}

function showSize(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1024) return `${Math.floor(n / 1024)} KiB`;
  return `${n} bytes`;
}

function showValue(v) {
  if (v === null || v === undefined) return '';
  if (isDocumentFile(v)) return `a file of ${showSize(v.size)}, stored apart`;
  if (Array.isArray(v)) {
    return v.map((x) => (x && typeof x === 'object' && 'question' in x
      ? `${x.question}: ${x.answer}` : showValue(x))).join('; ');
  }
  if (typeof v === 'object') {
    if ('value' in v && 'unit' in v) return `${v.value} ${v.unit}`;
    return JSON.stringify(v);
  }
  const s = String(v);
  return s.length > 400 ? `${s.slice(0, 400)}…` : s;
}

function versionContent(cat, v) {
  if (v.body && typeof v.body === 'object') {
    return Object.entries(v.body).map(([k, x]) => `${fieldTitle(cat, k)}: ${showValue(x)}`).join('; ');
  }
  if (v.text) return `Note: ${showValue(v.text)}`;
  if (v.reason) return `Reason: ${showValue(v.reason)}`;
  return '';
}

/**
 * A document's file: shown in the page (images and PDFs) or saved. The file is fetched
 * with the token (a plain link would not carry it) and kept only as long as the page shows it.
 */
function documentSection(entry) {
  const type = entry.body['media-type'] || '';
  const title = entry.body.title || 'document';
  const previewable = type === 'application/pdf' || type.startsWith('image/');
  const box = h('div', { class: 'document-preview', id: 'document-preview' });
  const fetchFile = () => attempt(() => api('document', { rid: state.rid, eid: entry.current || entry.id },
    { query: { disposition: 'inline' } }));
  const show = h('button', { type: 'button', class: 'secondary', id: 'document-show' }, 'Show the file');
  show.addEventListener('click', async () => {
    const blob = await fetchFile();
    if (!blob) return;
    const url = URL.createObjectURL(blob);
    box.replaceChildren(type.startsWith('image/')
      ? h('img', { src: url, alt: title })
      : h('iframe', { src: url, title, class: 'pdf' }));
    setStatus(`Showing ${title}.`);
  });
  const save = h('button', { type: 'button', class: 'secondary', id: 'document-save' }, 'Download the file');
  save.addEventListener('click', async () => {
    const blob = await fetchFile();
    if (!blob) return;
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: title });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    setStatus(`Downloaded ${title}.`);
  });
  return h('section', { 'aria-labelledby': 'document-title' },
    h('h3', { id: 'document-title' }, 'File'),
    h('p', {}, `${type || 'a file'}, ${showSize(entry.body.file.size)}. It is checked against `
      + 'the hash the entry names as it is read.'),
    h('p', { class: 'actions' }, previewable ? show : null, save),
    box);
}

async function renderEntry(eid) {
  const panel = $('panel');
  const [entry, history] = await Promise.all([
    attempt(() => api('entry', { rid: state.rid, eid })),
    attempt(() => api('history', { rid: state.rid, eid })),
  ]);
  if (!entry) return;
  panel.replaceChildren(
    h('p', {}, h('button', { type: 'button', class: 'secondary', onclick: () => showTab(state.tab) },
      '← Back')),
    h('h2', { tabindex: '-1', id: 'panel-title' }, `${catTitle(entry.category)}: ${entry.summary || ''}`),
    h('p', { class: 'meta' }, 'Entry ', h('code', { class: 'id' }, entry.id), ' · ',
      entry.deleted ? 'deleted · ' : '', entry.status === 'void' ? 'void · ' : '',
      `version ${entry.version} of ${entry.versions}`),
    bodyList(entry.category, entry.body));
  if (entry.body && isDocumentFile(entry.body.file)) panel.append(documentSection(entry));

  const versions = h('section', { 'aria-labelledby': 'versions-title' },
    h('h3', { id: 'versions-title' }, 'Versions'));
  if (Array.isArray(history) && history.length) {
    const table = h('table', { class: 'versions' },
      h('caption', { class: 'sr-only' }, 'Every version of this entry, oldest first'),
      h('thead', {}, h('tr', {}, ['Change', 'Who', 'Role', 'Organisation', 'Device', 'When', 'Content']
        .map((t) => h('th', { scope: 'col' }, t)))));
    const tb = h('tbody');
    for (const v of history) {
      const a = v.author || {};
      tb.append(h('tr', {},
        h('th', { scope: 'row' }, KIND_TEXT[v.kind] || v.kind),
        h('td', {}, a.name || shortId(a.actor)),
        h('td', {}, a.role || ''),
        h('td', {}, a.organisation || '—'),
        h('td', {}, v.device || ''),
        h('td', {}, when(v.time)),
        h('td', {}, versionContent(entry.category, v))));
    }
    table.append(tb);
    versions.append(h('div', { class: 'scroll' }, table));
  } else if (history) {
    versions.append(h('p', {}, 'No history.'));
  }
  panel.append(versions);

  const notes = h('section', { 'aria-labelledby': 'notes-title' }, h('h3', { id: 'notes-title' }, 'Notes'));
  const anns = entry.annotations || [];
  notes.append(anns.length
    ? h('ul', { class: 'notes' }, anns.map((a) => h('li', {}, h('span', { class: 'note-label' }, 'Note'),
      ` by ${person(a.author)}, `, when(a.time), `: ${a.text}`)))
    : h('p', {}, 'No notes on this entry.'));
  if (levelRank(myLevel(entry.category)) >= levelRank('annotate')) {
    const form = h('form', { id: 'annotate-form', novalidate: true },
      h('label', { for: 'note-text' }, 'Add a note to this entry'),
      h('textarea', { id: 'note-text', name: 'text', rows: '3', required: true,
        'aria-describedby': 'note-help' }),
      h('p', { id: 'note-help', class: 'help' },
        'A note is signed by you and shown with the entry; the entry itself is not changed.'),
      h('button', { type: 'submit' }, 'Add note'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const text = $('note-text').value.trim();
      if (!text) {
        showError(new Error('Write the note first.'));
        $('note-text').setAttribute('aria-invalid', 'true');
        $('note-text').focus();
        return;
      }
      const r = await attempt(() => api('annotate', { rid: state.rid, eid }, { body: { text } }));
      if (!r) return;
      setStatus('Your note was added.');
      await renderEntry(eid);
    });
    notes.append(form);
  }
  panel.append(notes);
  $('panel-title').focus();
}

// --- Timeline. ----------------------------------------------------------------------------

async function renderTimeline(panel) {
  panel.append(panelHeading('Timeline'), h('p', { class: 'help' }, 'Newest first.'));
  const entries = await attempt(() => api('timeline', { rid: state.rid }, { query: { limit: 200 } }));
  if (!entries) return;
  if (entries.length === 0) {
    panel.append(h('p', {}, 'Nothing in this record yet.'));
    return;
  }
  panel.append(h('ol', { class: 'entry-list timeline' }, entries.map((e) => h('li', {}, entryCard(e, 'h3', true)))));
}

// --- Trends: vital signs, lab results and questionnaire scores charted over time. ----------
// The entries come through the same audited read as the record tab (GET entries with the
// chartable categories); charts.js draws them, each with a table of the same data behind it.

const TREND_GROUPS = [
  ['Vital signs', 'trends-vital', ['vital-signs', 'wearables']],
  ['Body measurements', 'trends-body', ['examinations']],
  ['Lab results', 'trends-lab', ['lab-results']],
  ['Questionnaire scores', 'trends-questionnaire', ['questionnaires']],
];

async function renderTrends(panel) {
  panel.append(panelHeading('Trends'), h('p', { class: 'help' },
    'Vital signs, body measurements, lab results and questionnaire scores over time. '
    + 'Each chart has a table of the same values behind it (“Show as table”).'));
  // What the record holds now: entries may have arrived since the page was drawn.
  await refreshSummary();
  const visible = (state.summary.categories || []).filter((c) => CHART_CATEGORIES.includes(c.name)
    && (c.count ?? 0) > 0).map((c) => c.name);
  const focus = state.trendsFocus;
  state.trendsFocus = null;
  if (visible.length === 0) {
    panel.append(h('p', {}, 'There are no vital signs, measurements, lab results or questionnaire '
      + 'scores in this record that you may see yet.'));
    return;
  }
  const entries = await attempt(() => api('entries', { rid: state.rid }, { query: { category: visible.join(',') } }));
  if (!Array.isArray(entries)) return;
  const measures = buildMeasures(entries, fieldTitle);
  if (measures.length === 0) {
    panel.append(h('p', {}, 'Nothing here can be charted yet.'));
    return;
  }
  const { shown, more } = limitMeasures(measures);
  const groups = TREND_GROUPS.map(([name, id, cats]) => ({
    name, id, cats, list: shown.filter((m) => m.group === name),
  })).filter((g) => g.list.length);
  panel.append(h('nav', { 'aria-label': 'Charts on this page', class: 'trend-nav' },
    h('ul', { class: 'plain' }, groups.map((g) => h('li', {},
      h('a', { href: `#${g.id}` }, g.name), ` (${g.list.length} ${g.list.length === 1 ? 'chart' : 'charts'})`)))));
  let target = null;
  for (const g of groups) {
    const section = h('section', { class: 'trend-group', 'aria-labelledby': g.id },
      h('h3', { id: g.id, tabindex: '-1' }, g.name));
    for (const m of g.list) section.append(renderTrend(m, 'h4'));
    panel.append(section);
    if (focus && g.cats.includes(focus) && !target) target = g.id;
  }
  if (more.length) {
    panel.append(h('p', { class: 'help' }, `${more.length} more measures are not `
      + `charted here (at most ${MAX_MEASURES}): ${more.map((m) => m.title).join(', ')}.`));
  }
  setStatus(`${shown.length} ${shown.length === 1 ? 'chart' : 'charts'} of ${entries.length} entries.`);
  if (target) {
    const t = $(target);
    t.scrollIntoView();
    // After showTab focuses the panel heading.
    setTimeout(() => t.focus(), 0);
  }
}

// --- Appointments: upcoming first; book, reschedule and cancel (each a new version of the
// entry, through the entries API); reminders as written and those due now.

const OPEN_APPOINTMENT = ['proposed', 'booked', 'arrived'];
const REMINDER_CHOICES = [['1w', '1 week before'], ['1d', '1 day before'], ['2h', '2 hours before']];

/** An RFC 3339 time (UTC, whole seconds) from a datetime-local input's value. */
function rfc3339(local) {
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The value a datetime-local input shows for an RFC 3339 time (local time). */
function localInput(t) {
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function myActor() {
  return state.me && state.me.actor;
}

async function renderAppointments(panel) {
  panel.append(panelHeading('Appointments'), h('p', { class: 'help' },
    'Upcoming appointments first. Booking, rescheduling and cancelling each keep the earlier '
    + 'version in the record; reminders are given at the times chosen before the start.'));
  if (!myLevel('appointments')) {
    panel.append(h('p', {}, 'The patient has not shared appointments with you.'));
    return;
  }
  const got = await attempt(() => api('entries', { rid: state.rid }, { query: { category: 'appointments' } }));
  if (!Array.isArray(got)) return;
  await loadPeople();
  const due = (await attempt(() => api('reminders', { rid: state.rid }, { query: { within: '1w' } }))) || [];
  const now = Date.now();
  const items = got.filter((e) => !e.deleted);
  const startOf = (e) => Date.parse((e.body || {}).start || '') || 0;
  const upcoming = items.filter((e) => OPEN_APPOINTMENT.includes((e.body || {}).status) && startOf(e) >= now)
    .sort((a, b) => startOf(a) - startOf(b));
  const other = items.filter((e) => !upcoming.includes(e)).sort((a, b) => startOf(b) - startOf(a));
  const canWrite = levelRank(myLevel('appointments')) >= levelRank('write');
  const edit = h('div', { id: 'appointment-edit' });
  const table = (id, caption, rows, actions) => h('div', { class: 'scroll' }, h('table', { id },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, ['When', 'What', 'Where', 'With', 'Status', 'Reminders', 'Versions',
      ...(actions ? ['Actions'] : [])].map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((e) => {
      const b = e.body || {};
      const mine = e.author && e.author.actor === myActor();
      const dueNow = due.filter((d) => d.appointment === e.id);
      const what = b.description || 'Appointment';
      return h('tr', { 'data-entry': e.id, 'data-status': b.status || '' },
        h('th', { scope: 'row' }, b.start ? when(b.start) : 'No time yet', b.end ? [' to ', when(b.end)] : ''),
        h('td', {}, what), h('td', {}, b.place || '—'),
        h('td', {}, Array.isArray(b.with) && b.with.length ? b.with.map((w) => nameOf(w)).join(', ') : '—'),
        h('td', {}, h('span', { class: `badge status-${b.status || 'none'}` }, b.status || '—')),
        h('td', { class: 'reminders' }, Array.isArray(b.reminders) && b.reminders.length
          ? `${b.reminders.join(', ')} before` : 'None',
        dueNow.map((d) => h('span', { class: 'badge warn reminder-due' },
          ` ${d.state === 'due' ? 'Reminder due now' : `Reminder at ${new Date(d.at).toLocaleString()}`}`))),
        h('td', { class: 'num' }, e.versions > 1 ? `${e.versions} (changed ${e.versions - 1}×)` : '1'),
        actions ? h('td', {}, canWrite && mine && OPEN_APPOINTMENT.includes(b.status) ? [
          h('button', { type: 'button', class: 'small', onclick: () => rescheduleForm(edit, e) },
            'Reschedule', h('span', { class: 'sr-only' }, `: ${what}`)), ' ',
          h('button', { type: 'button', class: 'small secondary', onclick: async () => {
            const body = { ...b, status: 'cancelled' };
            if (await attempt(() => api('amendEntry', { rid: state.rid, eid: e.id }, { body: { body } }))) {
              setStatus(`Cancelled: ${what}.`);
              showTab('appointments', false);
            }
          } }, 'Cancel', h('span', { class: 'sr-only' }, ` appointment: ${what}`)),
        ] : '—') : null);
    }))));
  panel.append(h('h3', {}, 'Upcoming'));
  panel.append(upcoming.length ? table('appointments-upcoming', 'Upcoming appointments, soonest first', upcoming, true)
    : h('p', {}, 'No upcoming appointments.'));
  panel.append(edit);
  if (other.length) {
    panel.append(h('h3', {}, 'Past and cancelled'),
      table('appointments-past', 'Past and cancelled appointments, newest first', other, false));
  }
  if (canWrite) panel.append(bookForm());
}

function appointmentFields(prefix, b = {}) {
  const start = h('input', { type: 'datetime-local', id: `${prefix}-start`, required: true, value: b.start ? localInput(b.start) : '' });
  const end = h('input', { type: 'datetime-local', id: `${prefix}-end`, value: b.end ? localInput(b.end) : '' });
  const fields = [h('div', { class: 'field' }, h('label', { for: `${prefix}-start` }, 'Starts'), start),
    h('div', { class: 'field' }, h('label', { for: `${prefix}-end` }, 'Ends (optional)'), end)];
  return { start, end, fields };
}

function bookForm() {
  const { start, end, fields } = appointmentFields('book');
  const description = h('input', { type: 'text', id: 'book-description', required: true, maxlength: 200 });
  const place = h('input', { type: 'text', id: 'book-place', maxlength: 200 });
  const checks = REMINDER_CHOICES.map(([v, label]) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', name: 'book-reminder', value: v }), ` ${label}`));
  // With whom: the patient and those who may see appointments, by name.
  const people = grantedPeople('appointments', 'view');
  if (!isPatient() && state.summary && state.summary.patient) people.set(state.rid, state.summary.patient);
  people.delete(myActor());
  const withChecks = peopleChecks('book-with', people);
  return h('section', { 'aria-labelledby': 'book-heading' }, h('h3', { id: 'book-heading' }, 'Book an appointment'),
    h('form', { id: 'book-form', onsubmit: async (ev) => {
      ev.preventDefault();
      const body = { status: 'booked', start: rfc3339(start.value), description: description.value.trim() };
      if (!body.start) { showError(new ApiError(0, 'invalid', 'Choose when it starts.')); return; }
      if (end.value) body.end = rfc3339(end.value);
      if (place.value.trim()) body.place = place.value.trim();
      const reminders = [...document.querySelectorAll('input[name=book-reminder]:checked')].map((c) => c.value);
      if (reminders.length) body.reminders = reminders;
      const withWhom = [...document.querySelectorAll('input[name=book-with]:checked')].map((c) => c.value);
      if (withWhom.length) body.with = withWhom;
      if (await attempt(() => api('addEntry', { rid: state.rid }, { body: { category: 'appointments', body } }))) {
        setStatus(`Booked: ${body.description}.`);
        showTab('appointments', false);
      }
    } }, ...fields,
    h('div', { class: 'field' }, h('label', { for: 'book-description' }, 'What it is for'), description),
    h('div', { class: 'field' }, h('label', { for: 'book-place' }, 'Where (optional)'), place),
    withChecks.length ? h('fieldset', { id: 'book-people' }, h('legend', {}, 'With (optional)'),
      h('ul', { class: 'checks' }, withChecks)) : '',
    h('fieldset', {}, h('legend', {}, 'Reminders'), ...checks),
    h('button', { type: 'submit' }, 'Book')));
}

function rescheduleForm(box, e) {
  const b = e.body || {};
  const { start, end, fields } = appointmentFields('reschedule', b);
  box.replaceChildren(h('form', { id: 'reschedule-form', 'aria-labelledby': 'reschedule-heading', onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { ...b, start: rfc3339(start.value) };
    if (!body.start) { showError(new ApiError(0, 'invalid', 'Choose when it starts.')); return; }
    if (end.value) body.end = rfc3339(end.value); else delete body.end;
    if (await attempt(() => api('amendEntry', { rid: state.rid, eid: e.id }, { body: { body } }))) {
      setStatus(`Rescheduled: ${b.description || 'appointment'}.`);
      showTab('appointments', false);
    }
  } }, h('h3', { id: 'reschedule-heading', tabindex: '-1' }, `Reschedule: ${b.description || 'appointment'}`),
  ...fields, h('button', { type: 'submit' }, 'Save the new time'), ' ',
  h('button', { type: 'button', class: 'secondary', onclick: () => box.replaceChildren() }, 'Never mind')));
  $('reschedule-heading').focus();
}

// --- Referrals and tasks: where each stands (sent → received → accepted → in progress →
// completed, or rejected / cancelled); the owner steps it with buttons, the requester may
// cancel; every step is a version the record's gate checks (docs/care-team.md).

const TASK_STEPS = ['sent', 'received', 'accepted', 'in-progress', 'completed'];
const TASK_STEP_TEXT = {
  sent: 'Sent', received: 'Received', accepted: 'Accepted', 'in-progress': 'In progress',
  completed: 'Completed', rejected: 'Rejected', cancelled: 'Cancelled',
};
// The owner's next steps from each status (the protocol's table; the gate decides).
const OWNER_NEXT = {
  sent: ['received', 'rejected'], received: ['accepted', 'rejected'], accepted: ['in-progress'],
  'in-progress': ['completed'],
};
const TASK_KIND_TEXT = {
  referral: 'Referral', task: 'Task', 'blood-test-request': 'Blood test request', questionnaire: 'Questionnaire',
};

function actsAs(actor) {
  return !!actor && (actor === myActor() || (isPatient() && actor === state.rid));
}

function taskProgress(status) {
  const closedOther = ['rejected', 'cancelled'].includes(status);
  const at = TASK_STEPS.indexOf(status);
  return h('ol', { class: 'steps', 'aria-label': `Status: ${TASK_STEP_TEXT[status] || status}` },
    TASK_STEPS.map((st, i) => h('li', {
      class: i < at ? 'done' : (i === at ? 'current' : 'todo'),
      'aria-current': i === at ? 'step' : null,
    }, TASK_STEP_TEXT[st], i < at ? h('span', { class: 'sr-only' }, ' (done)') : '')),
    closedOther ? h('li', { class: 'current closed', 'aria-current': 'step' }, TASK_STEP_TEXT[status]) : null);
}

async function renderTasks(panel) {
  panel.append(panelHeading('Referrals and tasks'), h('p', { class: 'help' },
    'Where each referral and task stands. Whoever must act on it moves it on; whoever sent it '
    + 'may cancel it. Each step is kept in the record with who took it.'));
  if (!myLevel('tasks')) {
    panel.append(h('p', {}, 'The patient has not shared referrals and tasks with you.'));
    return;
  }
  const got = await attempt(() => api('entries', { rid: state.rid }, { query: { category: 'tasks' } }));
  if (!Array.isArray(got)) return;
  await loadPeople();
  const canSend = levelRank(myLevel('tasks')) >= levelRank('write');
  const items = got.filter((e) => !e.deleted)
    .sort((a, b) => String(b.time).localeCompare(String(a.time)));
  if (items.length === 0) {
    panel.append(h('p', {}, 'No referrals or tasks yet.'));
    if (canSend) panel.append(sendTaskForm());
    return;
  }
  const step = async (e, status) => {
    const body = { ...(e.body || {}), status };
    if (await attempt(() => api('amendEntry', { rid: state.rid, eid: e.id }, { body: { body } }))) {
      setStatus(`${(e.body || {}).description || 'Task'}: ${TASK_STEP_TEXT[status]}.`);
      showTab('tasks', false);
    }
  };
  panel.append(h('div', { class: 'scroll' }, h('table', { id: 'tasks-table' },
    h('caption', {}, 'Referrals and tasks, latest change first'),
    h('thead', {}, h('tr', {}, ['Task', 'Kind', 'From', 'To', 'Due', 'Status', 'Actions']
      .map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, items.map((e) => {
      const b = e.body || {};
      const what = b.description || 'Task';
      const owner = actsAs(b.owner);
      const requester = actsAs(b.requester);
      const open = !['completed', 'rejected', 'cancelled'].includes(b.status);
      const next = owner && b.kind !== 'questionnaire' ? (OWNER_NEXT[b.status] || []) : [];
      const buttons = next.map((st) => h('button', { type: 'button', class: st === 'rejected' ? 'small secondary' : 'small',
        'data-step': st, onclick: () => step(e, st) }, `Mark ${TASK_STEP_TEXT[st].toLowerCase()}`,
      h('span', { class: 'sr-only' }, `: ${what}`)));
      if (requester && open) {
        buttons.push(h('button', { type: 'button', class: 'small secondary', 'data-step': 'cancelled',
          onclick: () => step(e, 'cancelled') }, 'Cancel', h('span', { class: 'sr-only' }, `: ${what}`)));
      }
      return h('tr', { 'data-entry': e.id, 'data-status': b.status || '' },
        h('th', { scope: 'row' }, what, b.note ? h('div', { class: 'meta' }, b.note) : ''),
        h('td', {}, TASK_KIND_TEXT[b.kind] || b.kind || '—'),
        h('td', { class: 'requester' }, b.requester === state.rid ? `${nameOf(b.requester)}, the patient` : nameOf(b.requester)),
        h('td', { class: 'owner' }, b.owner === state.rid ? `${nameOf(b.owner)}, the patient` : nameOf(b.owner)),
        h('td', {}, b.due || '—'),
        h('td', {}, taskProgress(b.status), h('div', { class: 'meta' }, 'Last step by ', person(e.author), ', ', when(e.time))),
        h('td', {}, buttons.length ? buttons.flatMap((x) => [x, ' ']) : '—'));
    })))));
  if (canSend) panel.append(sendTaskForm());
}

/** Sending a referral, a task or a blood-test request to someone who may act on it: a person
 * whose grant writes tasks, or the patient. The record's gate checks the rest. */
function sendTaskForm() {
  const me = isPatient() ? state.rid : myActor();
  const owners = grantedPeople('tasks', 'write');
  owners.delete(me);
  if (!isPatient() && state.summary && state.summary.patient) owners.set(state.rid, { ...state.summary.patient, role: 'the patient' });
  const kind = h('select', { id: 'task-kind' }, ['referral', 'task', 'blood-test-request']
    .map((k) => h('option', { value: k }, TASK_KIND_TEXT[k])));
  const owner = h('select', { id: 'task-owner', required: true }, h('option', { value: '' }, 'Choose…'),
    [...owners].map(([actor, p]) => h('option', { value: actor }, person(p))));
  const description = h('textarea', { id: 'task-description', rows: '3', required: true, maxlength: 4000 });
  const due = h('input', { type: 'date', id: 'task-due' });
  const note = h('input', { type: 'text', id: 'task-note', maxlength: 500 });
  return h('section', { 'aria-labelledby': 'send-task-heading' }, h('h3', { id: 'send-task-heading' }, 'Send a referral or task'),
    owners.size === 0 ? h('p', {}, 'No one with access to referrals and tasks can act on one yet.')
      : h('form', { id: 'send-task-form', novalidate: true, onsubmit: async (ev) => {
        ev.preventDefault();
        if (!owner.value || !description.value.trim()) {
          showError(new ApiError(0, 'invalid', 'Choose who must act on it, and say what is asked.'));
          (owner.value ? description : owner).focus();
          return;
        }
        const body = { kind: kind.value, description: description.value.trim(), requester: me, owner: owner.value, status: 'sent' };
        if (due.value) body.due = due.value;
        if (note.value.trim()) body.note = note.value.trim();
        if (await attempt(() => api('addEntry', { rid: state.rid }, { body: { category: 'tasks', body } }))) {
          setStatus(`Sent to ${nameOf(body.owner)}: ${body.description}.`);
          showTab('tasks', false);
        }
      } },
      h('div', { class: 'field' }, h('label', { for: 'task-kind' }, 'Kind'), kind),
      h('div', { class: 'field' }, h('label', { for: 'task-owner' }, 'To (who must act on it)'), owner),
      h('div', { class: 'field' }, h('label', { for: 'task-description' }, 'What is asked'), description),
      h('div', { class: 'field' }, h('label', { for: 'task-due' }, 'Due (optional)'), due),
      h('div', { class: 'field' }, h('label', { for: 'task-note' }, 'Note (optional)'), note),
      h('button', { type: 'submit' }, 'Send')));
}

// --- Questionnaires: assigned ones to answer, scores and bands, publishing and assigning. ---
// The node computes the score by the questionnaire's rule; every node's gate checks it.

async function renderQuestionnaires(panel) {
  panel.append(panelHeading('Questionnaires'), h('p', { class: 'help' },
    'Questionnaires your care team asks you to fill in (such as PHQ-9 for mood and GAD-7 for '
    + 'anxiety). Your answers are scored by the questionnaire\'s own rule; the scores are '
    + 'charted under Trends.'));
  const got = await attempt(() => api('questionnaires', { rid: state.rid }));
  if (!got) return;
  const byVersion = new Map();
  for (const p of got.published) byVersion.set(p.version, p);
  const result = h('div', { id: 'questionnaire-result', role: 'status', 'aria-live': 'polite' });
  const form = h('div', { id: 'questionnaire-form' });
  const open = got.assigned.filter((a) => !['completed', 'rejected', 'cancelled'].includes(a.status));
  const me = isPatient() ? state.rid : (state.me && state.me.actor);
  panel.append(h('h3', {}, 'To fill in'));
  if (open.length === 0) panel.append(h('p', {}, 'Nothing to fill in.'));
  else {
    panel.append(h('ul', { class: 'plain', id: 'assigned-list' }, open.map((a) => h('li', { 'data-task': a.id },
      h('strong', {}, a.title || a.description || 'Questionnaire'),
      a.due ? ` — due ${a.due}` : '',
      a.overdue ? h('span', { class: 'badge overdue' }, ' overdue') : '',
      ' ',
      a.owner === me && byVersion.has(a.questionnaire)
        ? h('button', { type: 'button', class: 'small', onclick: () => {
          answerForm(form, byVersion.get(a.questionnaire), a, result);
        } }, 'Fill in', h('span', { class: 'sr-only' }, `: ${a.title}`))
        : ''))));
  }
  panel.append(form, result);
  panel.append(h('h3', {}, 'Scores'));
  if (got.responses.length === 0) panel.append(h('p', {}, 'No questionnaire answered yet.'));
  else {
    const rows = [...got.responses].sort((a, b) => String(b.completed).localeCompare(String(a.completed)));
    panel.append(h('div', { class: 'scroll' }, h('table', { id: 'responses-table' },
      h('caption', {}, 'Questionnaires answered, newest first'),
      h('thead', {}, h('tr', {}, ['Questionnaire', 'Completed', 'Score', 'Severity', 'Flag'].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows.map((r) => h('tr', { 'data-entry': r.id, class: (r.flags || []).length ? 'flagged' : '' },
        h('th', { scope: 'row' }, r.questionnaire), h('td', {}, r.completed ? when(r.completed) : '—'),
        h('td', { class: 'num' }, r.score ?? '—'), h('td', {}, r.band || '—'),
        h('td', { class: 'flags' }, (r.flags || []).length
          ? (r.flags || []).map((f) => h('span', { class: 'flag' }, `Flag: ${f.label} (${f.answer})`))
          : 'None')))))));
  }
  if (myLevel('questionnaires') && levelRank(myLevel('questionnaires')) >= levelRank('write')) {
    panel.append(await publishSection(got));
  }
}

async function publishSection(got) {
  const box = h('section', { 'aria-labelledby': 'publish-heading' }, h('h3', { id: 'publish-heading' }, 'Publish and assign'));
  const builtIn = await attempt(() => api('builtInQuestionnaires'));
  if (Array.isArray(builtIn)) {
    const select = h('select', { id: 'publish-name' }, builtIn.map((b) => h('option', { value: b.name }, b.title)));
    box.append(h('form', { id: 'publish-form', onsubmit: async (ev) => {
      ev.preventDefault();
      const r = await attempt(() => api('publishQuestionnaire', { rid: state.rid }, { body: { built_in: select.value } }));
      if (r) { setStatus(`Published ${r.title}.`); showTab('questionnaires'); }
    } }, h('div', { class: 'field' }, h('label', { for: 'publish-name' }, 'Questionnaire'), select),
    h('button', { type: 'submit' }, 'Publish into this record')));
  }
  for (const p of got.published) {
    const due = h('input', { type: 'date', id: `due-${p.id}`, required: true });
    box.append(h('form', { class: 'assign-form', 'data-questionnaire': p.id, onsubmit: async (ev) => {
      ev.preventDefault();
      if (!due.value) { showError(new ApiError(0, 'invalid', 'Choose a due date.')); return; }
      const r = await attempt(() => api('assignQuestionnaire', { rid: state.rid, eid: p.id }, { body: { due: due.value } }));
      if (r) { setStatus(`Assigned ${p.title}, due ${due.value}.`); showTab('questionnaires'); }
    } }, h('div', { class: 'field' }, h('label', { for: `due-${p.id}` }, `${p.title}: due`), due),
    h('button', { type: 'submit' }, 'Assign to the patient')));
  }
  return box;
}

/** The form answering `p` (a published questionnaire) for the assignment `a`. */
function answerForm(box, p, a, result) {
  const d = p.definition;
  const inputs = [];
  const form = h('form', { id: 'answer-form', novalidate: true, 'aria-labelledby': 'answer-heading' },
    h('h3', { id: 'answer-heading', tabindex: '-1' }, d.title),
    d.description ? h('p', {}, d.description) : '');
  for (const item of d.items) {
    const id = `q-${item.link_id}`.replace(/[^A-Za-z0-9_-]/g, '_');
    const legend = h('legend', {}, item.text, item.required ? h('span', { class: 'required' }, ' (required)') : '');
    if (item.type === 'display') { form.append(h('p', {}, item.text)); continue; }
    if (item.type === 'choice' || item.type === 'boolean') {
      const options = item.type === 'choice' ? item.options.map((o) => [o.code, o.display])
        : [['true', 'Yes'], ['false', 'No']];
      form.append(h('fieldset', { class: 'question', 'data-link': item.link_id }, legend,
        options.map(([code, label], k) => h('p', {}, h('input', {
          type: 'radio', name: id, id: `${id}-${k}`, value: code, required: item.required,
        }), ' ', h('label', { for: `${id}-${k}` }, label)))));
      inputs.push([item, () => {
        const c = form.querySelector(`input[name="${id}"]:checked`);
        if (!c) return undefined;
        return item.type === 'boolean' ? c.value === 'true' : c.value;
      }]);
    } else {
      const input = h('input', { id, type: item.type === 'integer' ? 'number' : 'text', required: item.required });
      form.append(h('div', { class: 'field', 'data-link': item.link_id }, h('label', { for: id }, item.text), input));
      inputs.push([item, () => {
        if (input.value.trim() === '') return undefined;
        return item.type === 'integer' ? Number(input.value) : input.value;
      }]);
    }
  }
  if (d.copyright) form.append(h('p', { class: 'help' }, d.copyright));
  form.append(h('button', { type: 'submit' }, 'Send my answers'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const answers = [];
    const missing = [];
    for (const [item, value] of inputs) {
      const v = value();
      if (v === undefined) { if (item.required) missing.push(item.text); continue; }
      answers.push({ question: item.link_id, answer: v });
    }
    if (missing.length) {
      showError(new ApiError(0, 'invalid', `Please answer every question: ${missing.length} left (first: “${missing[0]}”).`));
      return;
    }
    const r = await attempt(() => api('answerQuestionnaire', { rid: state.rid, eid: p.version },
      { body: { answers, task: a.id } }));
    if (!r) return;
    box.replaceChildren();
    await showTab('questionnaires', false);
    const res = $('questionnaire-result');
    if (res) {
      res.replaceChildren(h('p', { class: 'score' }, `${d.title}: your score is `,
        h('strong', { id: 'questionnaire-score' }, String(r.score ?? '—')),
        r.band ? [' (', h('strong', { id: 'questionnaire-band' }, r.band), ')'] : '', '.'));
      if ((r.flags || []).length) {
        res.append(h('p', { id: 'questionnaire-flag', class: 'flag' },
          h('strong', {}, 'Flagged for your care team: '),
          r.flags.map((f) => (f.total ? `${f.label} (your ${f.answer})` : `${f.label} (you answered “${f.answer}”)`)).join('; '),
          r.flags.some((f) => !f.total)
            ? '. If you feel you may act on these thoughts, call your local emergency number now.'
            : '. Your care team is told. If you feel unsafe, call your local emergency number.'));
      }
    }
    setStatus(`Answers sent: score ${r.score ?? '—'}${r.band ? ` (${r.band})` : ''}.`);
  });
  box.replaceChildren(form);
  $('answer-heading').focus();
}

// --- Add an entry: a form generated from the category's field definitions. -----------------

/** Normalises a field definition from /categories: {kind, codes, units}. */
function fieldKind(f) {
  const t = f.type;
  if (t && typeof t === 'object') {
    const kind = Object.keys(t)[0];
    const inner = t[kind];
    if (kind === 'code') return { kind, codes: Array.isArray(inner) ? inner : (f.codes || []), units: [] };
    if (kind === 'quantity') return { kind, codes: [], units: (inner && inner.units) || f.units || [] };
    return { kind, codes: f.codes || [], units: [] };
  }
  const units = f.units || (f.unit ? [f.unit] : []);
  return { kind: t || 'text', codes: f.codes || [], units };
}

function fieldInput(f) {
  const { kind, codes, units } = fieldKind(f);
  const id = `f-${f.name}`;
  const title = f.title || fieldTitle('', f.name);
  const label = h('label', { for: id }, title, f.required ? h('span', { class: 'req' }, ' (required)') : '');
  const common = { id, name: f.name, required: !!f.required, 'aria-required': f.required ? 'true' : null };
  let control;
  let hint = '';
  switch (kind) {
    case 'long-text':
      control = h('textarea', { ...common, rows: '3' });
      break;
    case 'integer':
      control = h('input', { ...common, type: 'number', step: '1', inputmode: 'numeric' });
      break;
    case 'decimal':
      control = h('input', { ...common, type: 'number', step: 'any', inputmode: 'decimal' });
      break;
    case 'bool':
      control = h('select', common, h('option', { value: '' }, '—'),
        h('option', { value: 'true' }, 'yes'), h('option', { value: 'false' }, 'no'));
      break;
    case 'date':
      control = h('input', { ...common, type: 'text', inputmode: 'numeric', placeholder: 'YYYY-MM-DD' });
      hint = 'A date: YYYY-MM-DD, or just YYYY-MM or YYYY.';
      break;
    case 'date-time':
      control = h('input', { ...common, type: 'datetime-local', step: '60' });
      break;
    case 'code':
      control = h('select', common, h('option', { value: '' }, f.required ? 'Choose…' : '—'),
        codes.map((c) => h('option', { value: c }, c)));
      break;
    case 'quantity': {
      const input = h('input', { ...common, type: 'number', step: 'any', inputmode: 'decimal' });
      if (units.length > 1) {
        const unit = h('select', { id: `${id}-unit`, name: `${f.name}-unit`, 'aria-label': `${title} unit` },
          units.map((u) => h('option', { value: u }, u)));
        control = h('span', { class: 'quantity' }, input, unit);
      } else {
        control = h('span', { class: 'quantity' }, input,
          units[0] ? h('span', { class: 'unit', id: `${id}-unit` }, units[0]) : '');
        if (units[0]) input.setAttribute('aria-describedby', `${id}-unit`);
      }
      break;
    }
    case 'text-list':
      control = h('textarea', { ...common, rows: '3' });
      hint = 'One item per line.';
      break;
    case 'answers':
      control = h('textarea', { ...common, rows: '4' });
      hint = 'One answer per line, as “question: answer”.';
      break;
    case 'binary':
      control = h('input', { ...common, type: 'file' });
      break;
    default:
      control = h('input', { ...common, type: 'text' });
  }
  const wrap = h('div', { class: 'field', 'data-kind': kind }, label, control);
  // An extension's field may carry help text from its definition.
  if (f.help) hint = hint ? `${f.help} ${hint}` : f.help;
  if (hint) {
    const hid = `${id}-hint`;
    wrap.append(h('p', { id: hid, class: 'help' }, hint));
    const target = control.tagName === 'SPAN' ? control.querySelector('input') : control;
    target.setAttribute('aria-describedby', [target.getAttribute('aria-describedby'), hid].filter(Boolean).join(' '));
  }
  return wrap;
}

function fileBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ''));
    r.onerror = () => reject(new Error('The file could not be read.'));
    r.readAsDataURL(file);
  });
}

/** Reads the generated form into a body; throws an Error naming the field on bad input. */
async function readBody(cat, form) {
  const body = {};
  for (const f of cat.fields || []) {
    const { kind } = fieldKind(f);
    const el = form.querySelector(`#f-${CSS.escape(f.name)}`);
    if (!el) continue;
    el.removeAttribute('aria-invalid');
    const title = f.title || f.name;
    const bad = (msg) => {
      el.setAttribute('aria-invalid', 'true');
      const e = new Error(msg);
      e.field = el;
      return e;
    };
    if (kind === 'binary') {
      if (el.files && el.files[0]) body[f.name] = await fileBase64(el.files[0]);
      else if (f.required) throw bad(`${title} is required.`);
      continue;
    }
    const raw = el.value.trim();
    if (raw === '') {
      if (f.required) throw bad(`${title} is required.`);
      continue;
    }
    switch (kind) {
      case 'integer': {
        const n = Number(raw);
        if (!Number.isInteger(n)) throw bad(`${title} must be a whole number.`);
        body[f.name] = n;
        break;
      }
      case 'decimal': {
        const n = Number(raw);
        if (!Number.isFinite(n)) throw bad(`${title} must be a number.`);
        body[f.name] = n;
        break;
      }
      case 'quantity': {
        const n = Number(raw);
        if (!Number.isFinite(n)) throw bad(`${title} must be a number.`);
        const unitEl = form.querySelector(`#f-${CSS.escape(f.name)}-unit`);
        const unit = unitEl ? (unitEl.value || unitEl.textContent) : '';
        body[f.name] = unit ? { value: n, unit } : n;
        break;
      }
      case 'bool':
        body[f.name] = raw === 'true';
        break;
      case 'date-time': {
        const d = new Date(raw);
        if (Number.isNaN(d.getTime())) throw bad(`${title} must be a date and time.`);
        body[f.name] = d.toISOString().replace(/\.\d{3}Z$/, 'Z');
        break;
      }
      case 'text-list':
        body[f.name] = raw.split('\n').map((s) => s.trim()).filter(Boolean);
        break;
      case 'answers':
        body[f.name] = raw.split('\n').map((s) => s.trim()).filter(Boolean).map((line) => {
          const i = line.indexOf(':');
          if (i < 0) throw bad(`${title}: write each line as “question: answer”.`);
          const answer = line.slice(i + 1).trim();
          const num = Number(answer);
          return { question: line.slice(0, i).trim(), answer: answer !== '' && Number.isFinite(num) ? num : answer };
        });
        break;
      default:
        body[f.name] = raw;
    }
  }
  return body;
}

async function renderAdd(panel) {
  panel.append(panelHeading('Add an entry'));
  const cats = writableCategories();
  if (cats.length === 0) {
    panel.append(h('p', {}, 'You may not add entries to this record.'));
    return;
  }
  const wanted = state.addCategory && cats.some((c) => c.name === state.addCategory)
    ? state.addCategory : cats[0].name;
  state.addCategory = null;
  const select = h('select', { id: 'add-category', name: 'category' },
    cats.map((c) => h('option', { value: c.name, selected: c.name === wanted }, c.title || c.name)));
  const fields = h('fieldset', { id: 'add-fields' });
  const form = h('form', { id: 'add-form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'add-category' }, 'Category'), select),
    fields,
    h('p', { class: 'help' }, 'The entry is signed with your key and cannot be overwritten: ' +
      'a later change is a new version, and the original stays in the history.'),
    h('button', { type: 'submit' }, 'Add entry'));
  const fill = () => {
    const cat = cats.find((c) => c.name === select.value);
    fields.replaceChildren(h('legend', {}, `${cat.title || cat.name} details`));
    if (cat.description) fields.append(h('p', { class: 'help' }, cat.description));
    // A document stored apart is attached by upload, not typed in (docs/documents.md).
    for (const f of cat.fields || []) if (f.type !== 'document') fields.append(fieldInput(f));
  };
  select.addEventListener('change', fill);
  fill();
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    const cat = cats.find((c) => c.name === select.value);
    let body;
    try {
      body = await readBody(cat, form);
    } catch (err) {
      showError(err);
      if (err.field) err.field.focus();
      return;
    }
    const r = await attempt(() => api('addEntry', { rid: state.rid }, { body: { category: cat.name, body } }));
    if (!r) return;
    setStatus(`Added to ${cat.title || cat.name}: ${r.summary || 'new entry'}.`);
    state.category = cat.name;
    await refreshSummary();
    await renderRecordKeepingStatus('record');
  });
  panel.append(form);
  if (cats.some((c) => c.name === 'documents')) panel.append(attachForm());
}

/**
 * Attach a document: the file goes to the node as it is (XMLHttpRequest, for its upload
 * progress), which recognises its type, seals it into its blob store and writes the entry.
 */
function attachForm() {
  const progress = h('progress', { id: 'attach-progress', max: '100', value: '0', hidden: true,
    'aria-label': 'Upload progress' });
  const form = h('form', { id: 'attach-form', novalidate: true },
    h('fieldset', {},
      h('legend', {}, 'Attach a document'),
      h('p', { class: 'help' }, 'A letter, report, scan or image (PDF, JPEG, PNG, DICOM, '
        + 'OpenDocument, plain text), up to 4 GiB. It is sealed under a key of its own and '
        + 'reaches only those who may see documents.'),
      h('div', { class: 'field' }, h('label', { for: 'attach-file' }, 'File (required)'),
        h('input', { id: 'attach-file', name: 'file', type: 'file', required: true })),
      h('div', { class: 'field' }, h('label', { for: 'attach-title' }, 'Title (default: the file’s name)'),
        h('input', { id: 'attach-title', name: 'title', type: 'text' })),
      h('div', { class: 'field' }, h('label', { for: 'attach-date' }, 'Date'),
        h('input', { id: 'attach-date', name: 'date', type: 'date' }))),
    h('button', { type: 'submit' }, 'Attach'),
    progress);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearError();
    const input = $('attach-file');
    const file = input.files && input.files[0];
    if (!file) {
      input.setAttribute('aria-invalid', 'true');
      showError(new Error('Choose a file first.'));
      input.focus();
      return;
    }
    input.removeAttribute('aria-invalid');
    const query = { title: $('attach-title').value.trim() || file.name };
    if ($('attach-date').value) query.date = $('attach-date').value;
    progress.hidden = false;
    progress.value = 0;
    const path = ROUTES.attach[1].replace('{rid}', enc(state.rid));
    upload(path, query, file, (p) => { progress.value = p; }).then(async (j) => {
      progress.value = 100;
      state.category = 'documents';
      await refreshSummary();
      await renderRecordKeepingStatus('record');
      // Said once the page is drawn again (what waits for it may act on the new page).
      setStatus(`Attached to Documents: ${j.summary || query.title}.`);
    }, (err) => showError(err));
  });
  return form;
}

/** Re-renders the record (summary, overview, a tab) without clearing the status message. */
async function renderRecordKeepingStatus(tab) {
  const status = $('status').textContent;
  state.tab = tab;
  await renderRecord();
  setStatus(status);
  const t = $('entries-title') || $('panel-title');
  if (t) t.focus();
}

// --- Who has access: grants, the grant form, revoke. ---------------------------------------

async function renderAccess(panel) {
  panel.append(panelHeading('Who has access'));
  const grants = await attempt(() => api('grants', { rid: state.rid }));
  if (grants) {
    if (grants.length === 0) {
      panel.append(h('p', {}, 'Only you can see this record.'));
    } else {
      const table = h('table', { id: 'grants' },
        h('caption', { class: 'sr-only' }, 'People and organisations with access to this record'),
        h('thead', {}, h('tr', {}, ['Who', 'Categories', 'Level', 'Expires', 'Status', 'Action']
          .map((t) => h('th', { scope: 'col' }, t)))));
      const tb = h('tbody');
      for (const g of grants) {
        const who = g.grantee || {};
        const cats = g.categories === 'all' ? 'All categories'
          : (g.categories || []).map(catTitle).join(', ');
        const action = g.status === 'active'
          ? h('button', {
            type: 'button', class: 'danger', 'data-grant': g.id,
            onclick: () => revoke(g),
          }, 'Revoke', h('span', { class: 'sr-only' }, ` access for ${who.name || who.actor}`))
          : '—';
        tb.append(h('tr', { 'data-grant': g.id, 'data-status': g.status },
          h('th', { scope: 'row' }, who.name
            ? [person(who), h('br'), h('code', { class: 'id' }, shortId(who.actor))]
            : h('code', { class: 'id' }, who.actor)),
          h('td', {}, cats),
          h('td', {}, g.level, g.delegate ? ' (may grant others)' : '', g.audit ? ' (may read audit trail)' : ''),
          h('td', {}, g.expires ? when(g.expires) : 'never'),
          h('td', {}, h('span', { class: `state state-${g.status}` }, GRANT_STATUS_TEXT[g.status] || g.status)),
          h('td', {}, action)));
      }
      table.append(tb);
      panel.append(h('div', { class: 'scroll' }, table));
      for (const g of grants.filter((x) => (x.members || []).length > 0)) {
        const org = (g.grantee && (g.grantee.name || g.grantee.actor)) || 'the organisation';
        const list = h('ul', { class: 'members', 'data-members-of': g.id });
        for (const m of g.members) {
          const who = m.member || {};
          list.append(h('li', { 'data-member': who.actor, 'data-removed': m.removed ? 'yes' : 'no' },
            who.name || m.label || shortId(who.actor || ''), ` (${m.role})`,
            m.removed ? ' — removed' : ''));
        }
        panel.append(h('section', { class: 'org-members' },
          h('h3', {}, `Staff of ${org} who have acted in your record`), list));
      }
    }
  }
  panel.append(h('section', { id: 'invitations', 'aria-live': 'polite' }));
  panel.append(grantForm());
  await renderInvitations();
}

function grantForm() {
  const catBoxes = allCategories().map((c) => h('li', { 'data-extension': c.extension ? 'true' : null },
    h('input', { type: 'checkbox', id: `g-cat-${c.name}`, name: 'category', value: c.name }),
    h('label', { for: `g-cat-${c.name}` }, c.title || c.name)));
  const all = h('input', { type: 'checkbox', id: 'g-all', name: 'all' });
  const result = h('div', { id: 'invite-result', 'aria-live': 'polite' });
  const form = h('form', { id: 'grant-form', novalidate: true, 'aria-labelledby': 'grant-title' },
    h('h3', { id: 'grant-title' }, 'Invite someone'),
    h('p', { class: 'help' }, 'You get a one-time link and QR code to give them. When they accept, '
      + 'you see who they are (verified or self-asserted) and confirm before they see anything.'),
    h('div', { class: 'field' },
      h('label', { for: 'g-label' }, 'Who it is for'),
      h('input', { id: 'g-label', name: 'label', type: 'text', autocomplete: 'off',
        placeholder: 'e.g. Pharmacy, or Mary (wife, main carer)' })),
    h('fieldset', {}, h('legend', {}, 'Which parts of the record'),
      h('p', {}, all, h('label', { for: 'g-all' }, 'All categories')),
      h('ul', { class: 'checks' }, catBoxes)),
    h('div', { class: 'field' },
      h('label', { for: 'g-level' }, 'What they may do'),
      h('select', { id: 'g-level', name: 'level' },
        LEVELS.map((l) => h('option', { value: l }, LEVEL_TEXT[l])))),
    h('div', { class: 'field' },
      h('label', { for: 'g-expires' }, 'Access ends on (optional)'),
      h('input', { id: 'g-expires', name: 'expires', type: 'text', inputmode: 'numeric',
        placeholder: 'YYYY-MM-DD', 'aria-describedby': 'g-expires-help' }),
      h('p', { id: 'g-expires-help', class: 'help' }, 'Leave empty for no end date; you can revoke at any time.')),
    h('div', { class: 'field' },
      h('label', { for: 'g-valid' }, 'The link works for'),
      h('select', { id: 'g-valid', name: 'valid' },
        h('option', { value: '24' }, '1 day'),
        h('option', { value: '168' }, '7 days'),
        h('option', { value: '720' }, '30 days'))),
    h('p', {}, h('input', { type: 'checkbox', id: 'g-audit', name: 'audit' }),
      h('label', { for: 'g-audit' }, 'They may see who viewed what (the audit trail)')),
    h('p', {}, h('input', { type: 'checkbox', id: 'g-delegate', name: 'delegate' }),
      h('label', { for: 'g-delegate' }, 'They may act for me and give others some of this access')),
    h('button', { type: 'submit' }, 'Create invitation'),
    result);
  all.addEventListener('change', () => {
    for (const b of form.querySelectorAll('input[name=category]')) b.disabled = all.checked;
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    const chosen = [...form.querySelectorAll('input[name=category]:checked')].map((b) => b.value);
    if (!all.checked && chosen.length === 0) {
      showError(new Error('Choose at least one category, or All categories.'));
      $('g-all').focus();
      return;
    }
    const body = {
      categories: all.checked ? 'all' : chosen,
      level: $('g-level').value,
      valid_for_hours: Number($('g-valid').value),
    };
    const label = $('g-label').value.trim();
    if (label) body.label = label;
    const exp = $('g-expires').value.trim();
    if (exp) {
      if (!/^\d{4}-\d{2}-\d{2}$/.test(exp) || Number.isNaN(new Date(`${exp}T23:59:59Z`).getTime())) {
        $('g-expires').setAttribute('aria-invalid', 'true');
        $('g-expires').focus();
        showError(new Error('The end date must be written YYYY-MM-DD.'));
        return;
      }
      body.expires = `${exp}T23:59:59Z`;
    }
    if ($('g-audit').checked) body.audit = true;
    if ($('g-delegate').checked) body.delegate = true;
    const r = await attempt(() => api('invite', { rid: state.rid }, { body }));
    if (!r) return;
    result.replaceChildren(
      h('p', {}, 'Give this link to the person you invite (it works once, until ', when(r.expires), '):'),
      h('p', {}, h('input', { id: 'invite-link', type: 'text', readonly: true, value: r.link,
        'aria-label': 'Invitation link', size: 60 })),
      qr(r.qr_svg));
    await renderInvitations();
    setStatus('Invitation created.');
  });
  return form;
}

// The QR code the API drew (an SVG document of our own node), shown as an image.
function qr(svg, id = 'invite-qr', alt = 'QR code of the invitation link') {
  const img = h('img', { id, alt, width: 200, height: 200 });
  img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
  return img;
}

// The record's invitations, as its home host keeps them: who accepted, confirm or decline.
async function renderInvitations() {
  const box = $('invitations');
  if (!box) return;
  let list;
  try {
    list = await api('invitations', { rid: state.rid });
  } catch (e) {
    // No network node or no home host yet: say so here, not as an error of the page.
    box.replaceChildren(h('h3', {}, 'Invitations'), h('p', { class: 'help' }, e.message));
    return;
  }
  box.replaceChildren(h('h3', {}, 'Invitations'));
  if (list.length === 0) {
    box.append(h('p', {}, 'No open invitations.'));
    return;
  }
  const table = h('table', { id: 'invitations-table' },
    h('caption', { class: 'sr-only' }, 'Invitations and who accepted them'),
    h('thead', {}, h('tr', {}, ['For', 'Access', 'Link works until', 'Status', 'Action']
      .map((t) => h('th', { scope: 'col' }, t)))));
  const tb = h('tbody');
  for (const i of list) {
    const cats = i.categories === 'all' ? 'All categories' : (i.categories || []).map(catTitle).join(', ');
    const who = i.accepted_by;
    const status = who ? ['Accepted by ', person(who)] : i.status;
    const actions = [];
    if (who) {
      actions.push(h('button', { type: 'button', 'data-confirm': i.invitation,
        onclick: () => confirmInvitation(i) }, 'Confirm',
      h('span', { class: 'sr-only' }, ` access for ${who.name || who.actor}`)), ' ');
    }
    actions.push(h('button', { type: 'button', class: 'danger', 'data-decline': i.invitation,
      onclick: () => declineInvitation(i) }, who ? 'Decline' : 'Withdraw'));
    tb.append(h('tr', { 'data-invitation': i.invitation, 'data-status': i.status },
      h('th', { scope: 'row' }, i.label || '—'),
      h('td', {}, cats, ': ', i.level),
      h('td', {}, when(i.expires)),
      h('td', {}, status),
      h('td', {}, actions)));
  }
  table.append(tb);
  box.append(h('div', { class: 'scroll' }, table));
}

async function confirmInvitation(i) {
  const r = await attempt(() => api('confirmInvitation', { rid: state.rid, iid: i.invitation }, { body: {} }));
  if (!r) return;
  await renderRecordKeepingStatus('access');
  setStatus(`Access given to ${person(r.grantee)}.`);
}

async function declineInvitation(i) {
  const r = await attempt(() => api('declineInvitation', { rid: state.rid, iid: i.invitation }, { body: {} }));
  if (!r) return;
  await renderInvitations();
  setStatus('Invitation closed: it opens nothing.');
}

async function revoke(g) {
  const r = await attempt(() => api('revoke', { rid: state.rid, gid: g.id }, { body: {} }));
  if (!r) return;
  await renderRecordKeepingStatus('access');
  setStatus(`Access revoked for ${(g.grantee && g.grantee.name) || 'them'}. What they saw before stays with them; they see nothing new.`);
}

// --- Who viewed what: the audit trail. -----------------------------------------------------

const AUDIT_PAGE = 50;

/** The filters of the audit view (kept while the app is open). */
const auditView = {
  actor: '', action: '', since: '', until: '', own: false, group: true, page: 1,
  people: new Map(), // actor id -> person, from the rows seen so far (for the "Who" list)
};

/** The audit query parameters for the current filters (ids, names of actions, dates only). */
function auditQuery() {
  const q = { limit: AUDIT_PAGE, page: auditView.page };
  if (auditView.actor) q.actor = auditView.actor;
  if (auditView.action) q.action = auditView.action;
  if (auditView.since) q.since = auditView.since;
  if (auditView.until) q.until = auditView.until;
  if (auditView.own) q.own = 'include';
  if (!auditView.group) q.group = 'false';
  return q;
}

function auditFilters(panel) {
  const who = h('select', { id: 'audit-actor', name: 'actor' }, h('option', { value: '' }, 'Anyone'),
    [...auditView.people].map(([id, p]) => h('option', { value: id, selected: id === auditView.actor }, person(p))));
  who.value = auditView.actor;
  const what = h('select', { id: 'audit-action', name: 'action' }, h('option', { value: '' }, 'Anything'),
    Object.entries(ACTION_TEXT).map(([a, t]) => h('option', { value: a }, t)));
  what.value = auditView.action;
  const since = h('input', { type: 'date', id: 'audit-since', name: 'since', value: auditView.since });
  const until = h('input', { type: 'date', id: 'audit-until', name: 'until', value: auditView.until });
  const own = h('input', { type: 'checkbox', id: 'audit-own', name: 'own', checked: auditView.own });
  const group = h('input', { type: 'checkbox', id: 'audit-group', name: 'group', checked: auditView.group });
  const form = h('form', { id: 'audit-filters', class: 'filters' },
    h('label', { for: 'audit-actor' }, 'Who ', who),
    h('label', { for: 'audit-action' }, 'Did what ', what),
    h('label', { for: 'audit-since' }, 'From ', since),
    h('label', { for: 'audit-until' }, 'To ', until),
    h('span', {}, own, h('label', { for: 'audit-own' }, ' Show my own views')),
    h('span', {}, group, h('label', { for: 'audit-group' }, ' Group a replica’s sync reads')),
    h('button', { type: 'submit' }, 'Show'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    Object.assign(auditView, {
      actor: who.value, action: what.value, since: since.value, until: until.value,
      own: own.checked, group: group.checked, page: 1,
    });
    showTab('audit');
  });
  panel.append(form);
}

async function renderAudit(panel) {
  panel.append(panelHeading('Who viewed what'),
    h('p', { class: 'help' }, 'Every view, addition, change, grant and export, newest first. '
      + 'Your own views are hidden unless you ask for them; a replica keeping its copy up to date '
      + 'shows as one line per run of syncs. Nothing is ever removed from the trail.'));
  const got = await attempt(() => api('audit', { rid: state.rid }, { query: auditQuery() }));
  if (!got) return;
  for (const r of got.rows) {
    if (r.actor && r.actor.actor && !auditView.people.has(r.actor.actor)) auditView.people.set(r.actor.actor, r.actor);
  }
  auditFilters(panel);
  if (got.rows.length === 0) {
    const filtered = auditView.actor || auditView.action || auditView.since || auditView.until;
    panel.append(h('p', { id: 'audit-empty' }, got.events === 0 ? 'No one has used this record yet.'
      : filtered ? 'Nothing matches these filters.'
        : 'No one else has used this record yet (tick “Show my own views” to see yours).'));
    return;
  }
  const table = h('table', { id: 'audit' },
    h('caption', { class: 'sr-only' }, 'Audit trail'),
    h('thead', {}, h('tr', {}, ['When', 'Who', 'Did what', 'To what', 'Where']
      .map((t) => h('th', { scope: 'col' }, t)))));
  const tb = h('tbody');
  for (const ev of got.rows) {
    if (ev.kind === 'sync') {
      tb.append(h('tr', { 'data-action': ev.action, 'data-kind': 'sync' },
        h('td', { class: 'nowrap' }, when(ev.first), ev.count > 1 ? [' – ', when(ev.last)] : ''),
        h('th', { scope: 'row' }, person(ev.actor)),
        h('td', {}, `kept their copy up to date (${ev.count} ${ev.count === 1 ? 'sync' : 'syncs'})`),
        h('td', {}, `${ev.entries_served} ${ev.entries_served === 1 ? 'entry' : 'entries'}`),
        h('td', {}, ev.device || '', ev.node ? [h('br'), h('span', { class: 'meta' }, 'node ', shortId(ev.node))] : '')));
      continue;
    }
    const n = Array.isArray(ev.entries) ? ev.entries.length : (ev.entry ? 1 : 0);
    const what = [ev.category ? catTitle(ev.category) : '',
      n === 1 ? shortId(ev.entry) : '', n > 1 ? `${n} entries` : ''].filter(Boolean).join(' · ');
    tb.append(h('tr', { 'data-action': ev.action },
      h('td', { class: 'nowrap' }, when(ev.time)),
      h('th', { scope: 'row' }, person(ev.actor)),
      h('td', {}, ACTION_TEXT[ev.action] || ev.action),
      h('td', {}, what || 'the record'),
      h('td', {}, ev.device || '', ev.node ? [h('br'), h('span', { class: 'meta' }, 'node ', shortId(ev.node))] : '')));
  }
  table.append(tb);
  panel.append(h('div', { class: 'scroll' }, table));
  if (got.pages > 1) {
    const go = (page) => () => { auditView.page = page; showTab('audit'); };
    panel.append(h('p', { class: 'pager', id: 'audit-pages' },
      h('button', { type: 'button', class: 'secondary', id: 'audit-newer', disabled: got.page <= 1, onclick: go(got.page - 1) }, 'Newer'),
      ` Page ${got.page} of ${got.pages} `,
      h('button', { type: 'button', class: 'secondary', id: 'audit-older', disabled: got.page >= got.pages, onclick: go(got.page + 1) }, 'Older')));
  }
}

// --- Export. -----------------------------------------------------------------------------

async function renderExport(panel) {
  panel.append(panelHeading('Export'),
    h('p', {}, 'Download the whole record — every signed entry, the data definitions and the ' +
      'audit trail — as one file. Anyone can check it offline with `cophr verify FILE`, and ' +
      'you can import it on another host.'),
    h('button', { type: 'button', id: 'export-button', onclick: download }, 'Download export'));
}

async function download() {
  const blob = await attempt(() => api('export', { rid: state.rid }));
  if (!blob) return;
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: `${state.rid}.cophr`, class: 'sr-only' }, 'export');
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  setStatus(`Export downloaded (${blob.size} bytes).`);
}

// --- Emergency summary links (docs/emergency-summary.md). -------------------------------------

const SHARE_STATUS_TEXT = { active: 'open', expired: 'expired', ended: 'ended by you' };

async function renderShares(panel) {
  panel.append(panelHeading('Emergency summary'),
    h('p', {}, 'Make a link and QR code that shows any clinician your about me, alerts, '
      + 'allergies, medications and problems, in a browser, without cophr. The key that '
      + 'decrypts it is in the link only: this node keeps only ciphertext. Anyone with the '
      + 'link sees the summary until it expires or you end it, and every opening is listed '
      + 'in "Who viewed what" with its time and network address.'));
  const form = h('form', { id: 'share-form', class: 'stack' },
    h('label', { for: 'share-expires' }, 'The link opens for'),
    h('select', { id: 'share-expires' },
      [['1h', '1 hour'], ['24h', '24 hours'], ['3d', '3 days'], ['7d', '7 days']]
        .map(([v, t]) => h('option', { value: v, selected: v === '24h' }, t))),
    h('label', { for: 'share-label' }, 'What it is for (optional, shown only to you)'),
    h('input', { id: 'share-label', type: 'text', maxlength: '200' }),
    h('p', {}, h('button', { type: 'submit', id: 'share-create' }, 'Make an emergency summary link')));
  const made = h('div', { id: 'share-made', 'aria-live': 'polite' });
  const list = h('div', { id: 'share-list' });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { expires_in: $('share-expires').value, base_url: window.location.origin };
    const label = $('share-label').value.trim();
    if (label) body.label = label;
    const got = await attempt(() => api('createShare', { rid: state.rid }, { body }));
    if (!got) return;
    showMadeShare(made, got);
    setStatus(`Emergency summary link made, open until ${new Date(got.expires).toLocaleString()}.`);
    await listShares(list);
  });
  panel.append(form, made, list);
  await listShares(list);
}

function showMadeShare(box, got) {
  const qr = got.qr_svg
    ? h('img', {
      id: 'share-qr', alt: 'QR code of the emergency summary link', width: '240', height: '240',
      src: URL.createObjectURL(new Blob([got.qr_svg], { type: 'image/svg+xml' })),
    })
    : null;
  box.replaceChildren(h('h3', {}, 'Your link'),
    h('p', {}, 'Give this link, or let them scan the QR code. It is shown only now: '
      + 'this node does not keep the key.'),
    h('p', {}, h('input', {
      id: 'share-link', type: 'text', readonly: true, value: got.link, size: '60',
      'aria-label': 'Emergency summary link',
    })),
    qr);
}

async function listShares(box) {
  const rows = await attempt(() => api('shares', { rid: state.rid }));
  box.replaceChildren();
  if (!Array.isArray(rows)) return;
  box.append(h('h3', {}, 'Your links'));
  if (rows.length === 0) {
    box.append(h('p', {}, 'No emergency summary links yet.'));
    return;
  }
  const table = h('table', { id: 'shares' },
    h('caption', { class: 'sr-only' }, 'Your emergency summary links'),
    h('thead', {}, h('tr', {}, ['For', 'Status', 'Until', 'Opened', 'Last opened', '']
      .map((t) => h('th', { scope: 'col' }, t)))));
  const tb = h('tbody');
  for (const s of rows) {
    tb.append(h('tr', { 'data-share': s.id },
      h('td', {}, s.label || '—'),
      h('td', { class: 'share-status' }, SHARE_STATUS_TEXT[s.status] || s.status),
      h('td', {}, when(s.expires)),
      h('td', {}, `${s.opens} time${s.opens === 1 ? '' : 's'}`),
      h('td', {}, s.last_opened ? when(s.last_opened) : '—'),
      h('td', {}, s.status === 'active'
        ? h('button', { type: 'button', class: 'secondary small share-end', onclick: async () => {
          const ended = await attempt(() => api('endShare', { rid: state.rid, sid: s.id }));
          if (!ended) return;
          setStatus('The link is ended: it opens no more.');
          await listShares(box);
        } }, 'End now')
        : '')));
  }
  table.append(tb);
  box.append(h('div', { class: 'scroll' }, table));
}

// --- Devices and key recovery (docs/trust.md "Devices and key recovery"). --------------------

/** A read-only text people carry to each other (a recovery request, an approval). */
function carried(id, label, text) {
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('textarea', { id, readonly: true, rows: 5, class: 'carried', spellcheck: 'false', value: text }));
}

async function renderDevices(panel) {
  panel.append(panelHeading('Devices & recovery'),
    h('p', { class: 'help' }, 'A device is another key — your phone, a tablet — that acts for you in this '
      + 'record until you remove it. Guardians are people you trust to approve a new key together '
      + 'if you lose this one.'));
  const devBox = h('section', { id: 'devices-box', 'aria-labelledby': 'devices-title' });
  const gBox = h('section', { id: 'guardians-box', 'aria-labelledby': 'guardians-title' });
  panel.append(devBox, deviceForm(devBox), gBox, keyBackupForm());
  await listDevices(devBox);
  await renderGuardians(gBox);
}

// An encrypted backup of this identity's key: sealed by the node under the passphrase typed
// here (never kept, logged or shown again), downloaded as a file, and if asked kept by the
// home host, which cannot open it.
function keyBackupForm() {
  const done = h('div', { id: 'key-backup-done', 'aria-live': 'polite' });
  const form = h('form', { id: 'key-backup-form', novalidate: true, 'aria-labelledby': 'key-backup-title' },
    h('h3', { id: 'key-backup-title' }, 'Back up your key'),
    h('p', { class: 'help' }, 'An encrypted copy of your key that opens only with a passphrase. Keep the '
      + 'file and the passphrase apart, and not only on this machine. Restore it in a new home with '
      + '`cophr key restore FILE` (or `--from-host`).'),
    h('div', { class: 'field' },
      h('label', { for: 'key-backup-pass' }, 'Passphrase (at least 12 characters)'),
      h('input', { id: 'key-backup-pass', type: 'password', autocomplete: 'new-password', minlength: '12' })),
    h('div', { class: 'field' },
      h('label', { for: 'key-backup-pass2' }, 'The passphrase again'),
      h('input', { id: 'key-backup-pass2', type: 'password', autocomplete: 'new-password' })),
    h('div', { class: 'field' },
      h('label', {},
        h('input', { id: 'key-backup-host', type: 'checkbox' }),
        ' Also keep it at my home host (it cannot open it)')),
    h('button', { type: 'submit' }, 'Make the backup'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    const pass = $('key-backup-pass');
    const again = $('key-backup-pass2');
    if ([...pass.value].length < 12) {
      pass.setAttribute('aria-invalid', 'true');
      pass.focus();
      showError(new Error('Choose a passphrase of at least 12 characters.'));
      return;
    }
    if (pass.value !== again.value) {
      again.setAttribute('aria-invalid', 'true');
      again.focus();
      showError(new Error('The two passphrases differ.'));
      return;
    }
    pass.removeAttribute('aria-invalid');
    again.removeAttribute('aria-invalid');
    const body = { passphrase: pass.value, to_host: $('key-backup-host').checked };
    setStatus('Sealing the backup (this takes a moment on purpose)…');
    const got = await attempt(() => api('keyBackup', {}, { body }));
    pass.value = '';
    again.value = '';
    if (!got) return;
    const bytes = Uint8Array.from(atob(got.backup), (c) => c.charCodeAt(0));
    const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
    done.replaceChildren(
      h('p', { id: 'key-backup-made' }, `Backup made: ${bytes.length} bytes, `
        + (got.host ? `also kept by your home host ${got.host}.` : 'on this device only.')),
      h('p', {}, h('a', { id: 'key-backup-link', href: url, download: got.file_name }, `Download ${got.file_name}`)));
    setStatus('Backup made. Download it, and keep the passphrase somewhere else.');
  });
  return h('section', { id: 'key-backup-box' }, form, done);
}

async function listDevices(box) {
  const got = await attempt(() => api('devices', { rid: state.rid }));
  box.replaceChildren(h('h3', { id: 'devices-title' }, 'Your devices'));
  if (!got) return;
  const list = got.devices || [];
  if (list.length === 0) {
    box.append(h('p', { id: 'devices-empty' }, 'No devices yet: only this key acts for you.'));
    return;
  }
  const table = h('table', { id: 'devices' },
    h('caption', { class: 'sr-only' }, 'Devices that act for you in this record'),
    h('thead', {}, h('tr', {}, ['Device', 'Key', 'Added', 'Status', 'Action']
      .map((t) => h('th', { scope: 'col' }, t)))));
  const tb = h('tbody');
  for (const d of list) {
    const action = d.status === 'active'
      ? h('button', { type: 'button', class: 'danger small', 'data-remove-device': d.device,
        onclick: () => removeDevice(d, box) }, 'Remove', h('span', { class: 'sr-only' }, ` ${d.label}`))
      : '—';
    tb.append(h('tr', { 'data-device': d.device, 'data-status': d.status },
      h('th', { scope: 'row' }, d.label, d.this_node ? ' (this node)' : ''),
      h('td', {}, h('code', { class: 'id' }, d.device)),
      h('td', {}, when(d.time)),
      h('td', {}, h('span', { class: `state state-${d.status}` }, DEVICE_STATUS_TEXT[d.status] || d.status)),
      h('td', {}, action)));
  }
  table.append(tb);
  box.append(h('div', { class: 'scroll' }, table));
}

async function removeDevice(d, box) {
  const reason = window.prompt(`Why remove ${d.label}? (e.g. lost, sold)`, 'lost');
  if (reason === null) return;
  const body = reason.trim() ? { reason: reason.trim() } : {};
  const r = await attempt(() => api('removeDevice', { rid: state.rid, actor: d.device }, { body }));
  if (!r) return;
  await listDevices(box);
  setStatus(`${d.label} removed: from now on it writes nothing anyone accepts.`);
}

function deviceForm(box) {
  const form = h('form', { id: 'device-form', novalidate: true, 'aria-labelledby': 'device-form-title' },
    h('h3', { id: 'device-form-title' }, 'Add a device'),
    h('div', { class: 'field' },
      h('label', { for: 'device-key' }, 'The device’s key'),
      h('input', { id: 'device-key', name: 'device', type: 'text', autocomplete: 'off', spellcheck: 'false',
        placeholder: 'a-…', 'aria-describedby': 'device-key-help' }),
      h('p', { id: 'device-key-help', class: 'help' }, 'On the other device, `cophr whoami` prints it.')),
    h('div', { class: 'field' },
      h('label', { for: 'device-label' }, 'What it is'),
      h('input', { id: 'device-label', name: 'label', type: 'text', autocomplete: 'off', maxlength: '200',
        placeholder: 'e.g. My phone' })),
    h('button', { type: 'submit' }, 'Add device'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    const device = $('device-key').value.trim();
    const label = $('device-label').value.trim();
    if (!ACTOR_RE.test(device)) {
      $('device-key').setAttribute('aria-invalid', 'true');
      $('device-key').focus();
      showError(new Error('A device key starts with a- (the other device’s `cophr whoami`).'));
      return;
    }
    $('device-key').removeAttribute('aria-invalid');
    if (!label) {
      $('device-label').focus();
      showError(new Error('Say what the device is, e.g. My phone.'));
      return;
    }
    const r = await attempt(() => api('addDevice', { rid: state.rid }, { body: { device, label } }));
    if (!r) return;
    form.reset();
    await listDevices(box);
    setStatus(`${label} added: it acts for you in this record until you remove it.`);
  });
  return form;
}

async function renderGuardians(box) {
  box.replaceChildren(h('h3', { id: 'guardians-title' }, 'Guardians'));
  const [set, grants] = await Promise.all([
    attempt(() => api('guardians', { rid: state.rid })),
    attempt(() => api('grants', { rid: state.rid })),
  ]);
  const now = h('div', { id: 'guardians-now' });
  if (set && set.guardians && set.guardians.length) {
    now.append(h('p', {}, `Any ${set.threshold} of these ${set.guardians.length} together can approve `
      + 'a new key for you:'),
    h('ul', { id: 'guardian-list' }, set.guardians.map((p) => h('li', { 'data-guardian': p.actor },
      p.name ? [person(p), ' '] : '', h('code', { class: 'id' }, p.actor)))),
    h('p', { class: 'meta' }, 'Named ', when(set.time)));
  } else if (set) {
    now.append(h('p', {}, 'No guardians yet: if you lose this key, only a key backup can bring the record back.'));
  }
  box.append(now);
  // People who hold grants, by name (once each), to choose from; any other key by id.
  const people = new Map();
  for (const g of grants || []) {
    if (g.status === 'active' && g.grantee && !people.has(g.grantee.actor)) people.set(g.grantee.actor, g.grantee);
  }
  const chosen = new Set(((set && set.guardians) || []).map((p) => p.actor));
  const boxes = peopleChecks('guardian', people, chosen);
  const form = h('form', { id: 'guardians-form', novalidate: true, 'aria-labelledby': 'guardians-form-title' },
    h('h4', { id: 'guardians-form-title' }, 'Choose guardians'),
    h('p', { class: 'help' }, 'Choose people in different parts of your life (family, your GP practice). '
      + 'Enough of them together could take your record over: that is the trust you place in them.'),
    boxes.length ? h('fieldset', {}, h('legend', {}, 'People with access to your record'),
      h('ul', { class: 'checks' }, boxes)) : '',
    h('div', { class: 'field' },
      h('label', { for: 'guardian-other' }, 'Others, by key (one per line)'),
      h('textarea', { id: 'guardian-other', rows: 2, spellcheck: 'false', placeholder: 'a-…' })),
    h('div', { class: 'field' },
      h('label', { for: 'guardian-threshold' }, 'How many must approve together'),
      h('input', { id: 'guardian-threshold', type: 'number', min: '1', max: '16',
        value: String((set && set.threshold) || 1) })),
    h('button', { type: 'submit' }, 'Save guardians'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    const picked = [...form.querySelectorAll('input[name=guardian]:checked')].map((b) => b.value);
    const others = $('guardian-other').value.split(/\s+/).map((x) => x.trim()).filter(Boolean);
    const bad = others.find((x) => !ACTOR_RE.test(x));
    if (bad) {
      $('guardian-other').setAttribute('aria-invalid', 'true');
      $('guardian-other').focus();
      showError(new Error(`${shortId(bad)} is not a key (keys start with a-).`));
      return;
    }
    $('guardian-other').removeAttribute('aria-invalid');
    const guardians = [...new Set([...picked, ...others])];
    const threshold = Number($('guardian-threshold').value);
    if (guardians.length === 0 || guardians.length > 16) {
      showError(new Error('Choose 1 to 16 guardians.'));
      return;
    }
    if (!Number.isInteger(threshold) || threshold < 1 || threshold > guardians.length) {
      $('guardian-threshold').focus();
      showError(new Error(`How many must approve: 1 to ${guardians.length}.`));
      return;
    }
    const r = await attempt(() => api('setGuardians', { rid: state.rid }, { body: { guardians, threshold } }));
    if (!r) return;
    await renderGuardians(box);
    setStatus(`Guardians saved: any ${threshold} of ${guardians.length} can approve a new key.`);
  });
  box.append(form);
}

// A guardian (anyone holding someone else's record) approves that patient's recovery request.
async function renderApprove(panel) {
  panel.append(panelHeading('Approve a key recovery'),
    h('p', {}, 'If the patient lost their key, they give their guardians a recovery request '
      + '(cophr://recover/…). Before you approve, check with them — in person or on the phone — '
      + 'that the request is really theirs: enough approvals make its key the patient.'));
  const set = await attempt(() => api('guardians', { rid: state.rid }));
  if (set) {
    panel.append(h('p', { id: 'guardian-role' }, set.i_am_guardian
      ? (set.guardians.length === 1 ? 'You are the patient’s guardian: your approval alone makes a new key the patient.'
        : `You are one of the patient’s ${set.guardians.length} guardians; any ${set.threshold} together approve a new key.`)
      : 'You are not one of the patient’s guardians: an approval by you would be refused.'));
  }
  const result = h('div', { id: 'approval-result', 'aria-live': 'polite' });
  const form = h('form', { id: 'approve-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'approve-request' }, 'The recovery request'),
      h('textarea', { id: 'approve-request', rows: 3, spellcheck: 'false', placeholder: REQUEST_PREFIX })),
    h('button', { type: 'submit' }, 'Approve'),
    result);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    const request = $('approve-request').value.trim();
    if (!request.startsWith(REQUEST_PREFIX)) {
      $('approve-request').setAttribute('aria-invalid', 'true');
      $('approve-request').focus();
      showError(new Error(`A recovery request starts with ${REQUEST_PREFIX}.`));
      return;
    }
    $('approve-request').removeAttribute('aria-invalid');
    const r = await attempt(() => api('approveRecovery', { rid: state.rid }, { body: { request } }));
    if (!r) return;
    result.replaceChildren(h('p', {}, 'Give this approval back to the patient (read it out, send it, or let them scan the code):'),
      carried('approval-text', 'Your approval', r.approval),
      qr(r.qr_svg, 'approval-qr', 'QR code of your approval'));
    setStatus('Approval made. It approves only this new key for this record.');
  });
  panel.append(form);
}

// On the start page: recovering a record whose key was lost, onto this node's identity.
function recoverSection() {
  const box = h('section', { id: 'recover', class: 'card', 'aria-labelledby': 'recover-title' },
    h('h2', { id: 'recover-title' }, 'Recover a record'),
    h('p', { class: 'help' }, 'Lost the key of your record? Show your recovery request for it, give it to '
      + 'your guardians, and paste back the approvals they give you.'));
  const shown = h('div', { id: 'recovery-request', 'aria-live': 'polite' });
  const ask = h('form', { id: 'recovery-request-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'recover-record' }, 'The record id'),
      h('input', { id: 'recover-record', type: 'text', spellcheck: 'false', autocomplete: 'off', placeholder: 'a-…' })),
    h('button', { type: 'submit', class: 'secondary' }, 'Show my recovery request'),
    shown);
  ask.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    const record = $('recover-record').value.trim();
    if (!ACTOR_RE.test(record)) {
      $('recover-record').focus();
      showError(new Error('A record id starts with a-.'));
      return;
    }
    const r = await attempt(() => api('recoveryRequest', {}, { query: { record } }));
    if (!r) return;
    shown.replaceChildren(carried('recovery-request-text', 'Your recovery request (give it to your guardians)', r.request),
      qr(r.qr_svg, 'recovery-request-qr', 'QR code of your recovery request'));
  });
  const result = h('p', { id: 'recover-result', 'aria-live': 'polite' });
  const go = h('form', { id: 'recover-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'recover-host' }, 'The record’s home host'),
      h('input', { id: 'recover-host', type: 'text', spellcheck: 'false', autocomplete: 'off',
        placeholder: '/ip4/…/tcp/…/p2p/…' })),
    h('div', { class: 'field' },
      h('label', { for: 'recover-approvals' }, 'Your guardians’ approvals (one per line)'),
      h('textarea', { id: 'recover-approvals', rows: 4, spellcheck: 'false', placeholder: APPROVAL_PREFIX })),
    h('button', { type: 'submit' }, 'Recover the record'),
    result);
  go.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    const host = $('recover-host').value.trim();
    const approvals = $('recover-approvals').value.split(/\s+/).map((x) => x.trim()).filter(Boolean);
    if (!host.includes('/p2p/')) {
      $('recover-host').focus();
      showError(new Error('The host address ends in /p2p/ and its peer id.'));
      return;
    }
    if (approvals.length === 0 || approvals.length > 16
      || approvals.some((a) => !a.startsWith(APPROVAL_PREFIX))) {
      $('recover-approvals').focus();
      showError(new Error(`Paste 1 to 16 approvals, each starting with ${APPROVAL_PREFIX}.`));
      return;
    }
    setStatus('Recovering… (pulling the record from its host)');
    const r = await attempt(() => api('recover', {}, { body: { host, approvals } }));
    if (!r) return;
    const done = `Recovered: this identity is now the patient of record ${shortId(r.record)} `
      + `(${r.pulled} entries pulled, the new key written).`;
    result.textContent = done;
    if (await loadRecords()) renderRecordList();
    setStatus(done);
  });
  box.append(ask, go);
  return box;
}

// --- A clinician's own access. ---------------------------------------------------------------

async function renderMine(panel) {
  panel.append(panelHeading('What I may see and write'));
  const r = recordInfo();
  const levels = (r && r.level_by_category) || {};
  const names = Object.keys(levels);
  if (names.length === 0) {
    panel.append(h('p', {}, 'You have no access to this record at the moment.'));
    return;
  }
  const table = h('table', { id: 'my-access' },
    h('caption', { class: 'sr-only' }, 'Your access per category'),
    h('thead', {}, h('tr', {}, ['Category', 'Level', 'See', 'Add notes', 'Add and edit', 'Delete']
      .map((t) => h('th', { scope: 'col' }, t)))));
  const tb = h('tbody');
  for (const c of names) {
    const rank = levelRank(levels[c]);
    const yn = (need) => (rank >= levelRank(need) ? 'yes' : 'no');
    tb.append(h('tr', {}, h('th', { scope: 'row' }, catTitle(c)), h('td', {}, levels[c]),
      h('td', {}, yn('view')), h('td', {}, yn('annotate')), h('td', {}, yn('write')), h('td', {}, yn('delete'))));
  }
  table.append(tb);
  panel.append(h('div', { class: 'scroll' }, table));
  const grants = (state.summary.my_access && state.summary.my_access.grants) || [];
  if (grants.length) {
    panel.append(h('h3', {}, 'The grants behind it'), h('ul', {}, grants.map((g) => h('li', {},
      `${g.level || ''} on ${g.categories === 'all' ? 'all categories' : (g.categories || []).map(catTitle).join(', ')}`,
      g.expires ? [', until ', when(g.expires)] : '', g.status ? ` (${GRANT_STATUS_TEXT[g.status] || g.status})` : ''))));
  }
}

// ------------------------------------------------------------------------------------------
// Start.

function start() {
  $('sign-in-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = $('token').value.trim();
    if (!token) {
      $('token').setAttribute('aria-invalid', 'true');
      showError(new Error('Paste the API token first (`cophr token` prints it).'));
      $('token').focus();
      return;
    }
    setStatus('Signing in…');
    await signIn(token);
  });
  $('sign-out').addEventListener('click', signOut);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
}

start();

// --- An organisation's staff (docs/organisations.md). ------------------------------------------
// On the organisation's own node: its members, each with a role, added and removed by its
// administrators (the organisation's key and its devices); a member's proof of membership to
// hand over. On a member's node: the proofs it was given (home page).

const ROLE_TEXT = {
  clinician: 'clinician — everything the patient’s grant allows',
  nurse: 'nurse — everything the patient’s grant allows',
  doctor: 'doctor — everything the patient’s grant allows',
  pharmacist: 'pharmacist — everything the patient’s grant allows',
  receptionist: 'receptionist — demographics and appointments only',
  viewer: 'viewer — view only',
};

/** Whether the open record is an organisation's own (its profile says so). */
function isOrganisation(s) {
  const role = (s && s.patient && s.patient.role) || '';
  return /organi[sz]ation/i.test(role);
}

async function renderStaff(panel) {
  panel.append(panelHeading('Staff'),
    h('p', { class: 'help' }, 'Patients grant the organisation once; each member acts under that grant, '
      + 'narrowed by their role, from the proof of membership you give them. A member you remove '
      + 'writes nothing and receives nothing new from then on, in every record; what they wrote stays.'));
  const box = h('section', { id: 'staff-box', 'aria-labelledby': 'staff-title' });
  const proofBox = h('div', { id: 'staff-proof', 'aria-live': 'polite' });
  panel.append(box, proofBox);
  const got = await listStaff(box, proofBox);
  if (got && got.is_administrator) panel.append(staffForm(box, proofBox, got.roles || []));
}

async function listStaff(box, proofBox) {
  const got = await attempt(() => api('members', { rid: state.rid }));
  box.replaceChildren(h('h3', { id: 'staff-title' }, 'Members'));
  if (!got) return got;
  const list = got.members || [];
  if (list.length === 0) {
    box.append(h('p', { id: 'staff-empty' }, 'No members yet.'));
    return got;
  }
  const table = h('table', { id: 'staff' },
    h('caption', { class: 'sr-only' }, 'The organisation’s members, removed ones included'),
    h('thead', {}, h('tr', {}, ['Member', 'Key', 'Role', 'Added', 'Status', 'Actions']
      .map((t) => h('th', { scope: 'col' }, t)))));
  const tb = h('tbody');
  for (const m of list) {
    const actions = m.status === 'member' && got.is_administrator
      ? [h('button', { type: 'button', class: 'secondary small', 'data-proof-of': m.member,
        onclick: () => showProof(m, proofBox) }, 'Proof of membership',
        h('span', { class: 'sr-only' }, ` for ${m.label}`)), ' ',
      h('button', { type: 'button', class: 'danger small', 'data-remove-member': m.member,
        onclick: () => removeMember(m, box, proofBox) }, 'Remove', h('span', { class: 'sr-only' }, ` ${m.label}`))]
      : '—';
    tb.append(h('tr', { 'data-member': m.member, 'data-status': m.status },
      h('th', { scope: 'row' }, m.label),
      h('td', {}, h('code', { class: 'id' }, m.member)),
      h('td', {}, m.role),
      h('td', {}, when(m.added_time)),
      h('td', {}, h('span', { class: `state state-${m.status}` },
        m.status === 'removed' ? `removed ${when(m.removed_time)}` : 'member')),
      h('td', {}, actions)));
  }
  table.append(tb);
  box.append(h('div', { class: 'scroll' }, table));
  return got;
}

async function showProof(m, proofBox) {
  const got = await attempt(() => api('memberProof', { rid: state.rid, actor: m.member }));
  if (!got) return;
  proofBox.replaceChildren(
    h('h3', {}, `Proof of membership for ${m.label}`),
    h('p', { class: 'help' }, 'Give this to them (it is not secret, but only their key can use it): '
      + 'on their node, paste it under “Organisations you work for”, or run `cophr org use`.'),
    carried('staff-proof-text', 'Proof of membership', got.proof));
  $('staff-proof-text').focus();
}

async function removeMember(m, box, proofBox) {
  const reason = window.prompt(`Why remove ${m.label}? (kept in the records)`, 'left the service');
  if (reason === null) return;
  const body = reason.trim() ? { reason: reason.trim() } : {};
  const r = await attempt(() => api('removeMember', { rid: state.rid, actor: m.member }, { body }));
  if (!r) return;
  proofBox.replaceChildren();
  await listStaff(box, proofBox);
  const n = (r.records || []).length;
  setStatus(`${m.label} removed, in ${n} record${n === 1 ? '' : 's'} they joined here; `
    + 'the others as this node next pulls them.');
}

function staffForm(box, proofBox, roles) {
  const form = h('form', { id: 'staff-form', novalidate: true, 'aria-labelledby': 'staff-form-title' },
    h('h3', { id: 'staff-form-title' }, 'Add a member'),
    h('div', { class: 'field' },
      h('label', { for: 'staff-key' }, 'Their key'),
      h('input', { id: 'staff-key', type: 'text', autocomplete: 'off', spellcheck: 'false',
        placeholder: 'a-…', 'aria-describedby': 'staff-key-help' }),
      h('p', { id: 'staff-key-help', class: 'help' }, 'On their node, `cophr whoami` prints it.')),
    h('div', { class: 'field' },
      h('label', { for: 'staff-label' }, 'Who they are'),
      h('input', { id: 'staff-label', type: 'text', autocomplete: 'off', maxlength: '200',
        placeholder: 'e.g. Nurse Jo Bloggs' })),
    h('div', { class: 'field' },
      h('label', { for: 'staff-role' }, 'Role'),
      h('select', { id: 'staff-role' }, roles.map((r) => h('option', { value: r }, ROLE_TEXT[r] || r)))),
    h('button', { type: 'submit' }, 'Add member'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    const member = $('staff-key').value.trim();
    const label = $('staff-label').value.trim();
    const role = $('staff-role').value;
    if (!ACTOR_RE.test(member)) {
      $('staff-key').setAttribute('aria-invalid', 'true');
      $('staff-key').focus();
      showError(new Error('A key starts with a- (their node’s `cophr whoami`).'));
      return;
    }
    $('staff-key').removeAttribute('aria-invalid');
    if (!label) {
      $('staff-label').focus();
      showError(new Error('Say who they are, e.g. Nurse Jo Bloggs.'));
      return;
    }
    const r = await attempt(() => api('addMember', { rid: state.rid }, { body: { member, role, label } }));
    if (!r) return;
    form.reset();
    await listStaff(box, proofBox);
    setStatus(`${label} is a member as ${role}. Give them their proof of membership.`);
  });
  return form;
}

/** Home page: the organisations this identity works for, and a form for a new proof. */
async function membershipsSection() {
  const box = h('section', { class: 'card', id: 'memberships', 'aria-labelledby': 'memberships-title' },
    h('h2', { id: 'memberships-title' }, 'Organisations you work for'));
  const got = await attempt(() => api('memberships'));
  const list = (got && got.memberships) || [];
  box.append(list.length === 0
    ? h('p', { id: 'memberships-empty' }, 'None: paste a proof of membership your organisation gave you.')
    : h('ul', { id: 'memberships-list' }, list.map((m) => h('li', {},
      `${m.label || 'member'} — ${m.role}, for `, h('code', { class: 'id' }, m.organisation)))));
  const form = h('form', { id: 'membership-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'membership-proof' }, 'Proof of membership'),
      h('textarea', { id: 'membership-proof', rows: 3, spellcheck: 'false', placeholder: 'cophr-membership:…' })),
    h('button', { type: 'submit' }, 'Use this membership'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    const proof = $('membership-proof').value.trim();
    if (!proof.startsWith('cophr-membership:')) {
      $('membership-proof').focus();
      showError(new Error('A proof of membership starts with cophr-membership:'));
      return;
    }
    const r = await attempt(() => api('useMembership', {}, { body: { proof } }));
    if (!r) return;
    setStatus(`You act for ${r.organisation} as ${r.role} in the records it is granted.`);
    box.replaceWith(await membershipsSection());
  });
  box.append(form);
  return box;
}
