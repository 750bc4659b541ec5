"""A job whose judge fails every verdict, behind a base URL with credentials (issue 14): every head is flagged, so
the score stage fails with one line naming the reason (it used to finish with tables of nulls); a re-run asks
nothing again (every answer is cached); the credentials appear in no output and no file."""

from __future__ import annotations

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


def test_a_job_whose_every_head_is_flagged_fails_and_never_writes_credentials(tmp_path):
    with LoopbackServer() as good, LoopbackServer(LoopbackConfig(offvocab_rate=1.0)) as bad:
        url = good.base_url.replace("http://", "http://alice:PASSWD-k7q@")
        spec = tmp_path / "spec.yaml"
        spec.write_text(SPEC.replace("  answer_attempts: 2\n", "").format(
            out=tmp_path / "reports", cache=tmp_path / "cache", url=url, bad_url=bad.base_url.replace("http://", "http://bob:QSECRET9@")))
        args = ("--local", "--quiet", "--spec", str(spec))
        p = run_full_grid(*args, env=job_env(T_KEY="sk-t", CCS_LOG_LEVEL="DEBUG"), timeout=600)
        sent = good.stats.requests + bad.stats.requests
        again = run_full_grid(*args, env=job_env(T_KEY="sk-t"), timeout=600)
        assert good.stats.requests + bad.stats.requests == sent  # every answer came from the cache
    for run in (p, again):
        assert run.returncode == 2, run.stderr[-3000:]
        errs = [ln for ln in run.stderr.splitlines() if ln.startswith("error:")]
        assert len(errs) == 1 and "only 0 of 8 heads of ccs-tiny/random-init got a CCS" in errs[0], run.stderr[-3000:]
        assert "unusable verdict" in errs[0]
    assert not (tmp_path / "reports" / "flagged" / "index.html").exists()
    for f in [f for f in tmp_path.rglob("*") if f.is_file() and f.name != "spec.yaml"]:
        text = f.read_bytes().decode("latin-1")
        assert "PASSWD" not in text and "QSECRET9" not in text, f
    assert "PASSWD" not in p.stdout + p.stderr and "QSECRET9" not in p.stdout + p.stderr
