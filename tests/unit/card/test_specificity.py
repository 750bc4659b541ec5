"""Intervention specificity from top-1 accuracies: a head hurting its own task is specific, its layer's others are the null."""

from __future__ import annotations

import pytest

from ccs_dist.card.specificity import specificity_scores, task_families

MAP = {"colour": ("red", "colour"), "shape": ("square", "circle")}
TASKS = ("toy-colour", "toy-shape")


def _top1(drops: dict[str, dict[str, float]]) -> dict:
    out = {(t, "original"): 0.9 for t in TASKS}
    out.update({(t, head): 0.9 - d for head, per in drops.items() for t, d in per.items()})
    return out


def test_task_families_read_the_task_name():
    assert task_families("toy-colour", MAP) == ("colour",) and task_families("toy-shape@/x", MAP) == ("shape",)


def test_a_head_that_hurts_its_own_task_is_specific_and_a_swapped_label_is_not():
    top1 = _top1({"L0.H0": {"toy-colour": 0.3, "toy-shape": 0.0}, "L0.H1": {"toy-colour": 0.0, "toy-shape": 0.01}})
    right = specificity_scores(top1, {(0, 0): "red", (0, 1): "circle"}, TASKS, MAP)
    assert right[(0, 0)][0] == pytest.approx(0.3) and right[(0, 0)][1] == pytest.approx(-0.01)
    swapped = specificity_scores(top1, {(0, 0): "square", (0, 1): "circle"}, TASKS, MAP)
    assert swapped[(0, 0)][0] == pytest.approx(-0.3)


def test_a_label_naming_no_task_has_no_specificity():
    top1 = _top1({"L0.H0": {"toy-colour": 0.3, "toy-shape": 0.0}})
    assert specificity_scores(top1, {(0, 0): "texture"}, TASKS, MAP) == {}
