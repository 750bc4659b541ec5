"""The report's sections, in page order: one list, written once (like the stage chain of :mod:`ccs_dist.stages.chain`).

Each :class:`Section` says whether a run has it (``present``) and builds its content (``build``), both from
the one :class:`ccs_dist.report.view.ReportView`. A ``per_model`` section is shown once per model, with
``view.model`` set, as ``<id>-<model index>`` titled by the model's key; the top navigation lists the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from ccs_dist.report.html import Markup
from ccs_dist.report.sections.agreement import agreement
from ccs_dist.report.sections.attribution import attribution
from ccs_dist.report.sections.benchmark import benchmark_section
from ccs_dist.report.sections.ccs import across, model_section
from ccs_dist.report.sections.effects import ccs_effect_section
from ccs_dist.report.sections.failures import failures
from ccs_dist.report.sections.ground_truth import ground_truth_section
from ccs_dist.report.sections.pruning import pruning
from ccs_dist.report.sections.scores import has_scores, scores_section
from ccs_dist.report.sections.summary import summary
from ccs_dist.report.sections.tables import downloads
from ccs_dist.report.view import ReportView


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    present: Callable[[ReportView], bool]
    build: Callable[[ReportView], Markup]
    per_model: bool = False


def _always(view: ReportView) -> bool:
    return True


def _has(table: str) -> Callable[[ReportView], bool]:
    return lambda view: view.data.get(table) is not None


SECTIONS: tuple[Section, ...] = (
    Section("summary", "Summary", _always, summary),
    Section("ccs-at-k", "CCS@K", lambda v: any(m.at_k for m in v.models), across),
    Section("model", "", lambda v: bool(v.model.heads or v.model.at_k), model_section, per_model=True),
    Section("pruning", "Pruning", _has("evaluation"), pruning),
    Section("ground-truth", "Ground truth", _has("toy_outcomes"), ground_truth_section),
    Section("benchmark", "Benchmark", _has("benchmark_checks"), benchmark_section),
    Section("ccs-effect", "CCS vs effect", lambda v: any(h["scored"] for m in v.models for h in m.heads.values()), ccs_effect_section),
    # with verdicts but no agreement table the section says why there is nothing
    Section("scores", "Scores", has_scores, scores_section),
    Section("agreement", "Agreement", lambda v: _has("agreement")(v) or _has("judgments")(v), agreement),
    Section("attribution", "Attribution", _has("attribution"), attribution),
    Section("failures", "Failures", _always, failures),
    Section("tables", "Tables", _always, downloads),
)


class Part(NamedTuple):
    """One built section of the page."""

    id: str
    title: str
    content: Markup
    per_model: bool


def build_sections(view: ReportView, sections: tuple[Section, ...] = SECTIONS) -> list[Part]:
    """The sections present in this run, built in order."""
    parts = []
    for s in sections:
        if s.per_model:
            for m in view.models:
                focused = view.focus(m)
                if s.present(focused):
                    parts.append(Part(f"{s.id}-{m.index}", m.key, s.build(focused), True))
        elif s.present(view):
            parts.append(Part(s.id, s.title, s.build(view), False))
    return parts
