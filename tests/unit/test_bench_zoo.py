"""``bench/zoo.py --tiny``: every family timed, the identity holds, and its null (a flipped batch) does not."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.paths import REPO

FAMILIES = {"openclip-vit", "siglip2", "eva02", "hf-clip"}


def test_zoo_bench_smoke_run_and_its_null():
    proc = subprocess.run([sys.executable, "bench/zoo.py", "--tiny", "--repeats", "1", "--batch", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["bench"] == "zoo" and out["tiny"] and set(out["families"]) == FAMILIES
    for family, r in out["families"].items():
        assert r["plain_s"] > 0 and r["decompose_s"] > 0 and r["ratio"] > 0, family
        assert (r["batch"], r["layers"], r["device"]) == (2, 3, "cpu"), family
        assert r["identity_rel_err"] < 1e-4, family
        # the same check against another batch's embedding fails: the identity is not vacuous
        assert r["null_rel_err"] > 1e-2, family
