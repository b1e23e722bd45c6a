//! `GET /`: the reports with a form for their parameters, the runs with live progress
//! (Server-Sent Events), cancel buttons and download links, and the schedules with their
//! next and last fires. One HTML page and a little
//! plain JavaScript that reads the API; no build step. A strict Content-Security-Policy
//! allows only its own inline style and script (by a nonce per response) and requests to
//! this server.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};

use crate::AppState;

#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, description = "The dashboard", content_type = "text/html", body = String)))]
pub async fn page(State(state): State<AppState>) -> Response {
    let nonce = ream_auth::token::nonce();
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; \
         img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    let mut response = Html(body(&state, &nonce)).into_response();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

/// The page, its inline style and script marked with `nonce`. The reports and runs come
/// from the API (`/reports`, `/runs`), so what the page shows is what the caller may see;
/// under auth it asks once for a token, keeps it in the tab's sessionStorage and sends it
/// as `Authorization` (never in a URL); events are read with fetch for the same reason.
fn body(state: &AppState, nonce: &str) -> String {
    let auth = state.auth.is_some();
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ream</title>
<style nonce="{nonce}">
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
ul {{ list-style: none; padding: 0; }}
li.report {{ border-bottom: 1px solid #ddd; padding: .5em 0; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ text-align: left; padding: .3em .6em; border-bottom: 1px solid #eee; }}
progress {{ width: 12em; }}
#login {{ background: #f4f4f8; padding: 1em; margin-bottom: 1em; }}
.status-failed {{ color: #b00; }} .status-cancelled {{ color: #a60; }} .status-succeeded {{ color: #070; }}
.error {{ color: #b00; font-size: 12px; white-space: pre-wrap; }}
.eta {{ color: #666; font-size: 12px; }}
</style>
</head>
<body>
<h1>ream</h1>
<form id="login" hidden><label>Token <input type="password" name="token" autocomplete="off"></label>
 <button type="submit">Sign in</button> <span class="why"></span></form>
<h2>Reports</h2>
<ul id="reports"></ul>
<h2>Runs</h2>
<table id="runs"><thead><tr><th>Run</th><th>Report</th><th>Format</th><th>Status</th><th>Progress</th><th>Rows</th><th>Rate</th><th></th></tr></thead><tbody></tbody></table>
<h2>Schedules</h2>
<table id="schedules"><thead><tr><th>Schedule</th><th>Report</th><th>When</th><th>Next fire</th><th>Last fire</th><th>Delivers to</th></tr></thead><tbody></tbody></table>
<script nonce="{nonce}">
const AUTH = {auth};
let token = sessionStorage.getItem('ream-token');
async function api(path, opts = {{}}) {{
  opts.headers = Object.assign({{}}, opts.headers, token ? {{ authorization: 'Bearer ' + token }} : {{}});
  const r = await fetch(path, opts);
  if (r.status === 401) {{
    const body = await r.json().catch(() => ({{}}));
    login(body.error ? body.error.message : 'sign in');
    throw new Error('unauthorized');
  }}
  return r;
}}
function login(why) {{
  const f = document.querySelector('#login');
  f.querySelector('.why').textContent = why;
  f.hidden = false;
}}
document.querySelector('#login').onsubmit = e => {{
  e.preventDefault();
  const input = e.target.querySelector('input');
  token = input.value.trim(); input.value = '';
  sessionStorage.setItem('ream-token', token);
  e.target.hidden = true;
  load();
}};
const rows = new Map();
function row(run) {{
  let tr = rows.get(run.id);
  if (!tr) {{
    tr = document.createElement('tr');
    tr.dataset.run = run.id;
    tr.innerHTML = '<td class="id"></td><td class="report"></td><td class="format"></td><td class="status"></td>' +
      '<td><progress max="100"></progress> <span class="percent"></span> <span class="eta"></span></td>' +
      '<td class="rows"></td><td class="rate"></td>' +
      '<td class="actions"><button class="cancel">Cancel</button> <a class="download" hidden>Download</a>' +
      '<div class="error" hidden></div></td>';
    tr.querySelector('.cancel').onclick = () => api('/runs/' + run.id, {{ method: 'DELETE' }});
    document.querySelector('#runs tbody').prepend(tr);
    rows.set(run.id, tr);
  }}
  tr.querySelector('.id').textContent = run.id;
  tr.querySelector('.report').textContent = run.report;
  tr.querySelector('.format').textContent = run.format;
  const st = tr.querySelector('.status');
  st.textContent = run.status; st.className = 'status status-' + run.status;
  const done = ['succeeded', 'failed', 'cancelled'].includes(run.status);
  const bar = tr.querySelector('progress');
  // An indeterminate bar animates: only while the run lives and its total is unknown.
  if (done) bar.value = run.status === 'succeeded' ? 100 : (run.percent || 0);
  else if (run.percent === null) bar.removeAttribute('value'); else bar.value = run.percent;
  tr.querySelector('.percent').textContent = run.percent === null ? '' : run.percent + '%';
  tr.querySelector('.eta').textContent = done ? '' : eta(run);
  tr.querySelector('.rows').textContent = run.rows.toLocaleString();
  tr.querySelector('.rate').textContent = run.rows_per_second.toLocaleString() + ' rows/s';
  tr.querySelector('.cancel').hidden = done;
  const err = tr.querySelector('.error');
  err.hidden = !run.error; err.textContent = run.error || '';
  const a = tr.querySelector('.download');
  if (run.status === 'succeeded' && run.links.output) {{
    a.href = run.links.output; a.download = fileName(run); a.hidden = false;
  }}
  return done;
}}
// The time left, from the share done so far and the time it took.
function eta(run) {{
  if (!run.percent || run.percent >= 100) return '';
  const left = run.elapsed_seconds * (100 - run.percent) / run.percent;
  return 'ETA ' + (left < 90 ? Math.ceil(left) + ' s' : Math.ceil(left / 60) + ' min');
}}
// sales_by_region_2024-01-01_2024-12-31.csv: the report, its parameters' values, the format.
function fileName(run) {{
  const values = Object.values(run.parameters).map(v => Array.isArray(v) ? v.join('-') : String(v));
  const stem = [run.report, ...values].join('_').replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 120);
  return stem + '.' + run.format;
}}
// A title template with the form's current values in its `{{param}}` slots.
function fillTitle(template, form) {{
  const data = new FormData(form);
  return template.replace(/\{{\{{|\}}\}}|\{{([^}}:]+)(:[^}}]*)?\}}/g, (m, name) => {{
    if (m === '{{{{') return '{{';
    if (m === '}}}}') return '}}';
    const v = data.getAll(name.trim()).filter(x => x !== '');
    return v.length ? v.join(', ') : '…';
  }});
}}
// Server-Sent Events read with fetch, so the token goes in a header.
async function follow(run) {{
  if (row(run)) return;
  const r = await api(run.links.events);
  const reader = r.body.getReader();
  const text = new TextDecoder();
  let buf = '';
  for (;;) {{
    const {{ value, done }} = await reader.read();
    if (done) return;
    buf += text.decode(value, {{ stream: true }});
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {{
      const data = buf.slice(0, i).split('\n').filter(l => l.startsWith('data:')).map(l => l.slice(5)).join('\n');
      buf = buf.slice(i + 2);
      if (data && row(JSON.parse(data))) {{ reader.cancel(); return; }}
    }}
  }}
}}
function el(tag, attrs = {{}}, text) {{
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}}
function reportItem(rep) {{
  const li = el('li', {{ class: 'report', 'data-report': rep.id }});
  const h3 = el('h3', {{}}, rep.title || rep.id);
  li.append(h3);
  if (rep.description) li.append(el('p', {{}}, rep.description));
  const form = el('form', {{ class: 'run-form', 'data-report': rep.id }});
  for (const [name, p] of Object.entries(rep.parameters)) {{
    const label = el('label', {{}}, (p.label || name) + ' ');
    const d = p.default === null || p.default === undefined ? '' : (typeof p.default === 'string' ? p.default : JSON.stringify(p.default));
    label.append(p.one_of && p.one_of.length ? choice(name, p, d) : input(name, p, d));
    form.append(label, ' ');
  }}
  if (rep.title) {{
    const update = () => {{ h3.textContent = fillTitle(rep.title, form); }};
    form.addEventListener('input', update);
    form.addEventListener('change', update);
    update();
  }}
  const select = el('select', {{ name: '_format' }});
  for (const f of rep.formats) select.append(el('option', {{}}, f));
  const why = el('div', {{ class: 'error' }});
  why.hidden = true;
  form.append(select, ' ', el('button', {{ type: 'submit' }}, 'Run'), why);
  form.onsubmit = e => {{ e.preventDefault(); submit(form); }};
  li.append(form);
  return li;
}}
function input(name, p, d) {{
  const types = {{ date: 'date', int: 'number', float: 'number' }};
  const i = el('input', {{ type: p.list ? 'text' : (types[p.type] || 'text'), name, value: d }});
  if (p.type === 'float' && !p.list) i.step = 'any';
  if (p.required) i.required = true;
  return i;
}}
// `one_of`: a select box (several choices for a list parameter).
function choice(name, p, d) {{
  const s = el('select', {{ name }});
  if (p.list) s.multiple = true;
  const chosen = new Set(d.split(',').map(x => x.trim()).filter(x => x !== ''));
  if (!p.list && !p.required) s.append(el('option', {{ value: '' }}, ''));
  for (const v of p.one_of) {{
    const o = el('option', {{ value: String(v) }}, String(v));
    o.selected = chosen.has(String(v));
    s.append(o);
  }}
  if (p.required) s.required = true;
  return s;
}}
async function submit(form) {{
  const data = new FormData(form);
  const format = data.get('_format'); data.delete('_format');
  const parameters = {{}};
  for (const k of new Set(data.keys())) {{
    const v = data.getAll(k).filter(x => x !== '');
    const multiple = form.querySelector('select[name="' + k + '"]')?.multiple;
    if (v.length) parameters[k] = multiple ? v : v[0];
  }}
  if (format === 'html' && !AUTH) {{
    // HTML is opened live: the page renders as its rows stream in.
    window.open('/reports/' + form.dataset.report + '.html?' + new URLSearchParams(parameters));
    return;
  }}
  const r = await api('/runs', {{ method: 'POST', headers: {{ 'content-type': 'application/json' }},
    body: JSON.stringify({{ report: form.dataset.report, format, parameters }}) }});
  const body = await r.json();
  const why = form.querySelector('.error');
  why.hidden = r.ok; why.textContent = r.ok ? '' : body.error.message;
  if (r.ok) {{ follow(body); return; }}
  // A run that failed as it started is in the registry: list it, with its error.
  const runs = await (await api('/runs')).json();
  runs.runs.reverse().forEach(follow);
}}
// Each schedule the caller sees: its cadence, next fire, and last fire with its run or
// the reason it made none. Text only (textContent): nothing a schedule holds is markup.
function targets(s) {{
  return s.deliver.map(t => t.email ? 'email ' + (t.email.to.join(', ') || 'each burst') :
    t.webhook ? 'webhook ' + t.webhook.url : 'store ' + t.store.path).join('; ');
}}
async function schedules() {{
  const list = (await (await api('/schedules')).json()).schedules;
  const trs = await Promise.all(list.map(async s => {{
    const one = await (await api('/schedules/' + s.id)).json();
    const last = (one.fires || [])[0];
    const tr = document.createElement('tr');
    tr.dataset.schedule = s.id;
    const cells = [s.id, s.report, s.cron + ' (' + s.timezone + ')' + (s.enabled ? '' : ', off'),
      s.next_fire || '', last ? last.fire_time + ' ' + (last.run ? 'run ' + last.run : last.error) : 'not yet', targets(s)];
    for (const [i, text] of cells.entries()) {{
      const td = document.createElement('td');
      td.className = ['id', 'report', 'when', 'next', 'last', 'targets'][i];
      td.textContent = text;
      tr.append(td);
    }}
    return tr;
  }}));
  document.querySelector('#schedules tbody').replaceChildren(...trs);
}}
async function load() {{
  const reports = await (await api('/reports')).json();
  const ul = document.querySelector('#reports');
  ul.replaceChildren(...reports.reports.map(reportItem));
  const runs = await (await api('/runs')).json();
  runs.runs.reverse().forEach(follow);
  await schedules();
}}
load().catch(() => {{}});
setInterval(() => schedules().catch(() => {{}}), 5000);
</script>
</body>
</html>
"#
    )
}
