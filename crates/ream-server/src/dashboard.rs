//! `GET /`: the reports with a form for their parameters, and the runs with live progress
//! (Server-Sent Events), cancel buttons and download links. One HTML page and a little
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
      '<td><progress max="100"></progress> <span class="percent"></span></td><td class="rows"></td><td class="rate"></td>' +
      '<td class="actions"><button class="cancel">Cancel</button> <a class="download" hidden>Download</a></td>';
    tr.querySelector('.cancel').onclick = () => api('/runs/' + run.id, {{ method: 'DELETE' }});
    document.querySelector('#runs tbody').prepend(tr);
    rows.set(run.id, tr);
  }}
  tr.querySelector('.id').textContent = run.id;
  tr.querySelector('.report').textContent = run.report;
  tr.querySelector('.format').textContent = run.format;
  const st = tr.querySelector('.status');
  st.textContent = run.status; st.className = 'status status-' + run.status;
  const bar = tr.querySelector('progress');
  if (run.percent === null) bar.removeAttribute('value'); else bar.value = run.percent;
  tr.querySelector('.percent').textContent = run.percent === null ? '' : run.percent + '%';
  tr.querySelector('.rows').textContent = run.rows.toLocaleString();
  tr.querySelector('.rate').textContent = run.rows_per_second.toLocaleString() + ' rows/s';
  const done = ['succeeded', 'failed', 'cancelled'].includes(run.status);
  tr.querySelector('.cancel').hidden = done;
  const a = tr.querySelector('.download');
  if (run.status === 'succeeded' && run.links.output) {{ a.href = run.links.output; a.hidden = false; }}
  return done;
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
  li.append(el('h3', {{}}, rep.title || rep.id));
  if (rep.description) li.append(el('p', {{}}, rep.description));
  const form = el('form', {{ class: 'run-form', 'data-report': rep.id }});
  for (const [name, p] of Object.entries(rep.parameters)) {{
    const label = el('label', {{}}, (p.label || name) + ' ');
    const d = p.default === null || p.default === undefined ? '' : (typeof p.default === 'string' ? p.default : JSON.stringify(p.default));
    const input = el('input', {{ type: p.type === 'date' ? 'date' : 'text', name, value: d }});
    if (p.required) input.required = true;
    label.append(input);
    form.append(label, ' ');
  }}
  const select = el('select', {{ name: '_format' }});
  for (const f of rep.formats) select.append(el('option', {{}}, f));
  form.append(select, ' ', el('button', {{ type: 'submit' }}, 'Run'));
  form.onsubmit = e => {{ e.preventDefault(); submit(form); }};
  li.append(form);
  return li;
}}
async function submit(form) {{
  const data = new FormData(form);
  const format = data.get('_format'); data.delete('_format');
  const parameters = {{}};
  for (const [k, v] of data) if (v !== '') parameters[k] = v;
  if (format === 'html' && !AUTH) {{
    // HTML is opened live: the page renders as its rows stream in.
    window.open('/reports/' + form.dataset.report + '.html?' + new URLSearchParams(parameters));
    return;
  }}
  const r = await api('/runs', {{ method: 'POST', headers: {{ 'content-type': 'application/json' }},
    body: JSON.stringify({{ report: form.dataset.report, format, parameters }}) }});
  const body = await r.json();
  if (!r.ok) {{ alert(body.error.message); return; }}
  follow(body);
}}
async function load() {{
  const reports = await (await api('/reports')).json();
  const ul = document.querySelector('#reports');
  ul.replaceChildren(...reports.reports.map(reportItem));
  const runs = await (await api('/runs')).json();
  runs.runs.reverse().forEach(follow);
}}
load().catch(() => {{}});
</script>
</body>
</html>
"#
    )
}
