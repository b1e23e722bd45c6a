//! `GET /`: the reports with a form for their parameters, and the runs with live progress
//! (Server-Sent Events), cancel buttons and download links. Server-rendered HTML and a
//! little plain JavaScript; no build step.

use axum::extract::State;
use axum::response::Html;
use ream_core::spec::ParamType;

use ream_render::markup::esc;

use crate::AppState;

#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, description = "The dashboard", content_type = "text/html", body = String)))]
pub async fn page(State(state): State<AppState>) -> Html<String> {
    let mut reports = String::new();
    for (id, spec) in state.catalog().iter() {
        let s = spec.spec();
        let title = s.title.clone().unwrap_or_else(|| id.clone());
        reports.push_str(&format!("<li class=\"report\" data-report=\"{id}\"><h3>{}</h3>", esc(&title), id = esc(id)));
        if let Some(d) = &s.description {
            reports.push_str(&format!("<p>{}</p>", esc(d)));
        }
        reports.push_str(&format!("<form class=\"run-form\" data-report=\"{}\">", esc(id)));
        for (name, p) in &s.parameters {
            let input = if p.ty == ParamType::Date { "date" } else { "text" };
            let value = p
                .default
                .as_ref()
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            let label = p.label.clone().unwrap_or_else(|| name.clone());
            reports.push_str(&format!(
                "<label>{} <input type=\"{input}\" name=\"{}\" value=\"{}\"{}></label> ",
                esc(&label),
                esc(name),
                esc(&value),
                if p.required { " required" } else { "" }
            ));
        }
        reports.push_str("<select name=\"_format\">");
        for f in ream_engine::Format::ALL.iter().filter(|f| f.available()) {
            reports.push_str(&format!("<option>{}</option>", f.name()));
        }
        reports.push_str("</select> <button type=\"submit\">Run</button></form></li>");
    }
    Html(format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ream</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
ul {{ list-style: none; padding: 0; }}
li.report {{ border-bottom: 1px solid #ddd; padding: .5em 0; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ text-align: left; padding: .3em .6em; border-bottom: 1px solid #eee; }}
progress {{ width: 12em; }}
.status-failed {{ color: #b00; }} .status-cancelled {{ color: #a60; }} .status-succeeded {{ color: #070; }}
</style>
</head>
<body>
<h1>ream</h1>
<h2>Reports</h2>
<ul id="reports">{reports}</ul>
<h2>Runs</h2>
<table id="runs"><thead><tr><th>Run</th><th>Report</th><th>Format</th><th>Status</th><th>Progress</th><th>Rows</th><th>Rate</th><th></th></tr></thead><tbody></tbody></table>
<script>
const rows = new Map();
function row(run) {{
  let tr = rows.get(run.id);
  if (!tr) {{
    tr = document.createElement('tr');
    tr.dataset.run = run.id;
    tr.innerHTML = '<td class="id"></td><td class="report"></td><td class="format"></td><td class="status"></td>' +
      '<td><progress max="100"></progress> <span class="percent"></span></td><td class="rows"></td><td class="rate"></td>' +
      '<td class="actions"><button class="cancel">Cancel</button> <a class="download" hidden>Download</a></td>';
    tr.querySelector('.cancel').onclick = () => fetch('/runs/' + run.id, {{ method: 'DELETE' }});
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
function follow(run) {{
  if (row(run)) return;
  const es = new EventSource(run.links.events);
  const on = e => {{ const r = JSON.parse(e.data); if (row(r) || e.type === 'end') es.close(); }};
  es.addEventListener('progress', on);
  es.addEventListener('end', on);
}}
fetch('/runs').then(r => r.json()).then(d => d.runs.reverse().forEach(follow));
document.querySelectorAll('form.run-form').forEach(form => form.onsubmit = async e => {{
  e.preventDefault();
  const data = new FormData(form);
  const format = data.get('_format'); data.delete('_format');
  const parameters = {{}};
  for (const [k, v] of data) if (v !== '') parameters[k] = v;
  if (format === 'html') {{
    // HTML is opened live: the page renders as its rows stream in.
    window.open('/reports/' + form.dataset.report + '.html?' + new URLSearchParams(parameters));
    return;
  }}
  const r = await fetch('/runs', {{ method: 'POST', headers: {{ 'content-type': 'application/json' }},
    body: JSON.stringify({{ report: form.dataset.report, format, parameters }}) }});
  const body = await r.json();
  if (!r.ok) {{ alert(body.error.message); return; }}
  follow(body);
}});
</script>
</body>
</html>
"#
    ))
}
