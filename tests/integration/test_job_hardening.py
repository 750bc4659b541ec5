"""A job whose judge fails every verdict, behind a base URL with credentials (issue 14): the flagged heads
are listed in the run summary, the manifest and the report; the credentials appear in none of them."""

from __future__ import annotations

import json
import sys

from tests.support.loopback import LoopbackConfig, LoopbackServer
from tests.support.jobs import job_env, run_full_grid

SPEC = """
run: flagged
out: {out}
cache_dir: {cache}
models:
  - {{arch: ccs-tiny, pretrained: none, layers: 2, rank: 16}}
probe: {{images: "synthetic:24", batch_size: 12, workers: 0}}
llm:
  backend: openai
  answer_attempts: 2
  labeler: {{model: loopback-1, base_url: "{url}", api_key_env: T_KEY, rpm: 60000, max_attempts: 2, timeout_s: 5}}
  judges:
    - {{model: loopback-1, base_url: "{bad_url}", api_key_env: T_KEY, rpm: 60000, max_attempts: 2, timeout_s: 5}}
resources: {{device: cpu}}
"""


def test_flagged_heads_are_listed_and_credentials_never_written(tmp_path):
    with LoopbackServer() as good, LoopbackServer(LoopbackConfig(offvocab_rate=1.0)) as bad:
        url = good.base_url.replace("http://", "http://alice:PASSWD-k7q@")
        spec = tmp_path / "spec.yaml"
        spec.write_text(SPEC.replace("  answer_attempts: 2\n", "").format(
            out=tmp_path / "reports", cache=tmp_path / "cache", url=url, bad_url=bad.base_url.replace("http://", "http://bob:QSECRET9@")))
        p = run_full_grid("--local", "--quiet", "--spec", str(spec), env=job_env(T_KEY="sk-t", CCS_LOG_LEVEL="DEBUG"),
                          timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    run = tmp_path / "reports" / "flagged"
    assert "FLAGGED: 8 head(s)" in p.stdout and "ccs-tiny/random-init L" in p.stdout
    manifest = json.loads((run / "manifest.json").read_text())
    flagged = manifest["failures"]["flagged_heads"]
    assert len(flagged) == 8 and all("unusable verdict" in f["reason"] for f in flagged)
    html = (run / "index.html").read_text()
    assert "Flagged heads: scored with failed verdicts" in html
    for f in [f for f in tmp_path.rglob("*") if f.is_file() and f.name != "spec.yaml"]:
        text = f.read_bytes().decode("latin-1")
        assert "PASSWD" not in text and "QSECRET9" not in text, f
    assert "PASSWD" not in p.stdout + p.stderr and "QSECRET9" not in p.stdout + p.stderr
