"""The page shell: the run's view model and sections (:mod:`ccs_dist.report.sections`) -> one self-contained HTML page
(styles, script, data and SVG charts inline; no network).

The page carries a Content-Security-Policy that allows only its own inline script (by hash) and no
network at all; on top of that every data string is escaped (see :mod:`ccs_dist.report.html`).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import importlib.metadata
from importlib import resources
from pathlib import Path

from ccs_dist.report.html import Markup, esc, json_for_script, tag
from ccs_dist.report.load import RunData
from ccs_dist.report.sections import build_sections
from ccs_dist.report.view import build_view


def _asset(name: str) -> str:
    return resources.files("ccs_dist.report").joinpath("assets", name).read_text(encoding="utf-8")


def render(data: RunData, csvs: dict[str, Path], out_dir: Path) -> str:
    view = build_view(data, csvs, out_dir)
    models, thumbs = view.models, view.thumbs
    man = data.manifest
    run_name = str(man.get("run") or (man.get("spec") or {}).get("name") or data.run_dir.name)
    sections = build_sections(view)

    payload = {"models": [{"key": m.key, "judges": m.judges, "img_note": None if m.has_images else _no_images_note(data),
                           "heads": {k: {kk: vv for kk, vv in h.items() if kk not in ("scored",)} for k, h in m.heads.items()}}
                          for m in models],
               "thumbs": thumbs.payload()}
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    nav = Markup("".join(tag("a", title, href=f"#{sid}") for sid, title, _, per_model in sections if not per_model))
    model_nav = Markup("".join(tag("a", title, href=f"#{sid}") for sid, title, _, per_model in sections if per_model))
    rand = [m.key for m in models if m.random_init]
    warn = Markup("")
    if rand:
        warn = tag("div", tag("strong", "Random-initialised weights. "),
                   f"{', '.join(rand)} {'was' if len(rand) == 1 else 'were'} not pretrained: their heads have learned nothing, "
                   "so CCS, labels and pruning effects are a pipeline check, not a finding about CLIP, and they are never "
                   "compared with the paper's figures.", class_="warn", role="alert", id="random-init-warning")
    notes = Markup("".join(tag("div", n, class_="note") for n in data.notes))
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    version = (man.get("versions") or {}).get("ccs_dist") or _own_version()
    body = Markup("".join(tag("section", tag("h2", title), content, id=sid, class_="model" if per_model else None)
                          for sid, title, content, per_model in sections))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{esc(csp)}\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc('CCS report · ' + run_name)}</title>"
        f"<style>{_asset('report.css')}</style></head><body>"
        + tag("header", tag("h1", "Concept Consistency report · ", tag("span", run_name, id="run-name")),
              tag("p", f"generated {generated} by ccs_dist {version} · {len(models)} model{'s' if len(models) != 1 else ''} · "
                       "CCS = number of a head's 5 TextSpan descriptions an LLM judge finds aligned with its label (arXiv 2503.11103)",
                  class_="sub"),
              tag("nav", nav), tag("nav", model_nav), class_="top")
        + f"<main>{warn}{notes}{body}</main>"
        + tag("footer", "Self-contained page: no network is used. Click any head to see its card.")
        + "<dialog id=\"head-card\" aria-label=\"head card\"><div class=\"card-inner\">"
          "<button id=\"head-card-close\" type=\"button\">close ✕</button><div id=\"head-card-body\"></div></div></dialog>"
        + f"<script type=\"application/json\" id=\"ccs-data\">{json_for_script(payload)}</script>"
        + f"<script>{script}</script></body></html>\n"
    )



def _no_images_note(data: RunData) -> str:
    if data.get("head_images") is None:
        return ("No top/bottom images: this run's tables hold no head_images table (they are computed from the "
                "decomposition in the cache when the report is written from a full-grid run directory).")
    return "No top/bottom images for this model in the head_images table."


def _own_version() -> str:
    try:
        return importlib.metadata.version("ccs_dist")
    except Exception:  # noqa: BLE001
        return "?"
