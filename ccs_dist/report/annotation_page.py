"""A small static, self-contained HTML page to annotate (description, label) pairs: one yes/no radio pair per row
and a button that downloads the filled CSV (the exported CSV's columns, ``aligned`` 1/0/blank). No network: the
rows are in the page, the CSV is built in the browser."""

from __future__ import annotations

from collections.abc import Sequence

from ccs_dist.report.html import Markup, json_for_script, tag

_SCRIPT = r"""
const rows = JSON.parse(document.getElementById('rows').textContent);
const cols = JSON.parse(document.getElementById('cols').textContent);
const body = document.getElementById('pairs');
rows.forEach((r, i) => {
  const tr = document.createElement('tr');
  for (const c of ['label', 'text']) { const td = document.createElement('td'); td.textContent = r[c]; tr.appendChild(td); }
  const td = document.createElement('td');
  for (const [v, name] of [['1', 'fits'], ['0', 'does not fit']]) {
    const lab = document.createElement('label'); const inp = document.createElement('input');
    inp.type = 'radio'; inp.name = 'p' + i; inp.value = v; lab.appendChild(inp); lab.append(' ' + name + ' '); td.appendChild(lab);
  }
  tr.appendChild(td); body.appendChild(tr);
});
function cell(v) { const s = v === null || v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
function filledCsv() {
  const lines = [cols.join(',')];
  rows.forEach((r, i) => { const c = document.querySelector('input[name="p' + i + '"]:checked');
    lines.push(cols.map(k => cell(k === 'aligned' ? (c ? c.value : '') : r[k])).join(',')); });
  return lines.join('\n') + '\n';
}
document.getElementById('download').addEventListener('click', () => {
  const a = document.createElement('a');
  a.href = 'data:text/csv;charset=utf-8,' + encodeURIComponent(filledCsv());
  a.download = document.getElementById('download').dataset.name; document.body.appendChild(a); a.click(); a.remove();
  const n = document.querySelectorAll('input[type=radio]:checked').length;
  document.getElementById('status').textContent = n + ' of ' + rows.length + ' pairs annotated in the downloaded CSV';
});
"""

_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
          "td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}"
          "button{font-size:1em;padding:.4em 1em;margin:1em 0}")


def annotation_page(rows: Sequence[dict], columns: Sequence[str], csv_name: str) -> str:
    """The page for ``rows`` (dicts holding every column of ``columns``; ``aligned`` is what the annotator fills)."""
    intro = tag("p", "For each row: does the description fit the label (the property the head is said to encode)? "
                     "Judge from the text alone, without looking at the judges' verdicts (they are not in this page). "
                     "Then download the CSV and pass it to ", tag("code", "ccs-dist annotate --import FILE.csv"), ".")
    return "<!doctype html>" + tag(
        "html",
        tag("head", tag("meta", charset="utf-8"), tag("title", "Annotate (description, label) pairs"), tag("style", Markup(_STYLE))),
        tag("body", tag("h1", "Annotate (description, label) pairs"), intro,
            tag("table", tag("thead", tag("tr", tag("th", "label"), tag("th", "description"), tag("th", "verdict"))),
                tag("tbody", id="pairs")),
            tag("button", "Download the filled CSV", id="download", type="button", data_name=csv_name),
            tag("p", "", id="status"),
            tag("script", json_for_script(list(rows)), type="application/json", id="rows"),
            tag("script", json_for_script(list(columns)), type="application/json", id="cols"),
            tag("script", Markup(_SCRIPT))),
        lang="en",
    )
