"""The status page at `/` of the metrics port: one HTML document, rendered by the server.

Why server-rendered with a few lines of inline script, and nothing else: the page must work
from a pod's port-forward with no internet access and no build step, and show something
even with scripts off. The server renders the page from the same two bodies the script
then fetches every few seconds (`/healthz` and `/status.json`), so a refresh redraws the
same tables without reloading. Every value is escaped (server) or set as text (script):
topic names and error messages come from outside.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["REFRESH_S", "render"]

#: How often the page fetches `/healthz` and `/status.json` again.
REFRESH_S = 3

_PARTITION_COLUMNS = ("topic", "partition", "reason", "committed", "end", "lag", "unchanged_for_s")
_LETTER_COLUMNS = ("at", "stage", "topic", "partition", "offset", "error")
_HEADINGS = {"reason": "state", "unchanged_for_s": "no commit for (s)", "at": "at (UTC)"}

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
.muted{color:#777}.flow{display:flex;align-items:center;gap:.6em;flex-wrap:wrap}
.box{border:1px solid #bbb;border-radius:6px;padding:.4em .7em;background:#fff}
.box b{display:block;font-size:.75em;color:#777;text-transform:uppercase}
.arrow{font-size:1.4em;color:#999}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.healthy,.idle,.progressing{color:#17702b}
.unhealthy,.stuck,.blocked,.offsets_unavailable,.offsets_refused{color:#b00020;font-weight:600}
"""

_SCRIPT = """
(function(){
  var P=%(partitions)s, L=%(letters)s;
  function cell(tr,v,c){var td=document.createElement('td');
    td.textContent=(v===null||v===undefined)?'':String(v);
    if(typeof v==='number')td.className='n';if(c)td.className+=' '+c;tr.appendChild(td);}
  function fill(id,rows,cols,fmt){var tb=document.getElementById(id);
    while(tb.firstChild)tb.removeChild(tb.firstChild);
    rows.forEach(function(r){var tr=document.createElement('tr');
      cols.forEach(function(k){var v=fmt?fmt(k,r[k]):r[k];cell(tr,v,k==='reason'?v:'');});
      tb.appendChild(tr);});}
  function when(k,v){return k==='at'?new Date(v*1000).toISOString().replace('T',' ').slice(0,19):v;}
  function text(id,v){document.getElementById(id).textContent=v;}
  function get(u){return fetch(u,{cache:'no-store'}).then(function(r){return r.json();});}
  function refresh(){
    Promise.all([get('/healthz'),get('/status.json')]).then(function(b){
      var h=b[0],s=b[1],st=document.getElementById('status');
      st.textContent=h.status;st.className=h.status;
      text('problem',[h.error,h.wedged&&('wedged: '+h.wedged.stage+' for '+h.wedged.for_s+'s'),
        h.blocked&&('blocked: '+h.blocked.stage+' for '+h.blocked.for_s+'s: '+h.blocked.reason)]
        .filter(Boolean).join('; '));
      fill('partitions',h.partitions||[],P);fill('letters',s.dead_letters||[],L,when);
      text('records',s.records);text('rate',s.records_per_s);
      text('updated',new Date().toISOString().replace('T',' ').slice(0,19));
      document.body.setAttribute('data-refreshed','yes');
    }).catch(function(e){text('problem','refresh failed: '+e);});
  }
  refresh();setInterval(refresh,%(refresh_ms)d);
})();
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def _rows(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    out = []
    for row in rows:
        cells = []
        for key in columns:
            value = row.get(key)
            if key == "at" and isinstance(value, int | float):
                value = _when(value)
            css = "n" if isinstance(value, int | float) else ""
            if key == "reason":
                css = _e(value)
            cells.append(f'<td class="{css}">{_e(value)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out)


def _box(label: str, lines: Iterable[str], css: str) -> str:
    items = "".join(f'<div class="{css}">{_e(line)}</div>' for line in lines)
    return f'<div class="box"><b>{_e(label)}</b>{items or "<i>none</i>"}</div>'


def _flow(pipeline: dict[str, Any]) -> str:
    topics = pipeline.get("topics") or []
    transforms = pipeline.get("transforms") or []
    steps = [
        _box("topics", [t["topic"] for t in topics], "topic"),
        _box("types", [t["type"] for t in topics], "type"),
        _box("transforms", [f"{t['name']} ({t['kind']})" for t in transforms], "transform"),
        _box("writer", [pipeline.get("writer", "")], "writer"),
    ]
    arrow = '<span class="arrow">&rarr;</span>'
    dlq = pipeline.get("dead_letters")
    after = f'<div class="muted">dead letters to {_e(dlq)}</div>' if dlq else ""
    return f'<div class="flow" id="pipeline">{arrow.join(steps)}</div>{after}'


def _problem(health: dict[str, Any]) -> str:
    found = [health.get("error")]
    if health.get("wedged"):
        w = health["wedged"]
        found.append(f"wedged: {w['stage']} for {w['for_s']}s")
    if health.get("blocked"):
        b = health["blocked"]
        found.append(f"blocked: {b['stage']} for {b['for_s']}s: {b['reason']}")
    return "; ".join(str(p) for p in found if p)


def _head(columns: Sequence[str]) -> str:
    return "".join(f"<th>{_e(_HEADINGS.get(c, c))}</th>" for c in columns)


def render(health: dict[str, Any], status: dict[str, Any]) -> bytes:
    """The page from a `/healthz` body and a `/status.json` body."""
    name, group = _e(status.get("connector")), _e(status.get("group"))
    state = _e(health.get("status", "unknown"))
    script = _SCRIPT % {
        "partitions": json.dumps(_PARTITION_COLUMNS),
        "letters": json.dumps(_LETTER_COLUMNS),
        "refresh_ms": REFRESH_S * 1000,
    }
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name}: status</title><style>{_STYLE}</style></head>
<body data-refreshed="no">
<h1>{name} <span id="status" class="{state}">{state}</span></h1>
<div class="muted">group {group}; updated <span id="updated">{_when(time.time())}</span> UTC,
every {REFRESH_S}s</div>
<div id="problem" class="unhealthy">{_e(_problem(health))}</div>
<h2>Pipeline</h2>
{_flow(status.get("pipeline") or {})}
<p><span id="records">{_e(status.get("records"))}</span> records processed,
<span id="rate">{_e(status.get("records_per_s"))}</span> records/s</p>
<h2>Partitions</h2>
<table><thead><tr>{_head(_PARTITION_COLUMNS)}</tr></thead>
<tbody id="partitions">{_rows(health.get("partitions") or [], _PARTITION_COLUMNS)}</tbody></table>
<h2>Recent dead letters</h2>
<table><thead><tr>{_head(_LETTER_COLUMNS)}</tr></thead>
<tbody id="letters">{_rows(status.get("dead_letters") or [], _LETTER_COLUMNS)}</tbody></table>
<script>{script}</script>
</body></html>
"""
    return body.encode()
