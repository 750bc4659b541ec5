"""Synthetic probe images: written in parallel, identical to a serial write, and prefix-stable."""

from __future__ import annotations

import csv

from ccs_dist.data.synthetic_images import write_synthetic_images


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_parallel_write_equals_serial_and_smaller_sets_are_prefixes(tmp_path):
    write_synthetic_images(tmp_path / "par", 300, seed=3, size=64, progress=False, workers=2)
    write_synthetic_images(tmp_path / "ser", 300, seed=3, size=64, progress=False, workers=1)
    par, ser = _files(tmp_path / "par"), _files(tmp_path / "ser")
    assert len(par) == 301 and par == ser  # 300 PNGs + labels.csv, byte for byte
    write_synthetic_images(tmp_path / "few", 10, seed=3, size=64, progress=False)
    few = _files(tmp_path / "few")
    assert all(few[name] == par[name] for name in few if name.endswith(".png"))
    with open(tmp_path / "par" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [f"{i:06d}.png" for i in range(300)]
    write_synthetic_images(tmp_path / "other", 10, seed=4, size=64, progress=False)
    assert _files(tmp_path / "other")["000000.png"] != few["000000.png"]
