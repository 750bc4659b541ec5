"""A Ray instance the job starts itself listens on 127.0.0.1 only, with no metrics port (issue 14).

What listens is read from /proc (every TCP socket in LISTEN state owned by the driver or a process it
started), not from Ray's own account of it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

PROBE = r"""
import json, os, sys
from ccs_dist.distributed import executor
import ray
executor._connect(None)

@ray.remote
def f():
    return 1

assert ray.get(f.remote()) == 1

def children(pid):
    out = {pid}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out |= children(int(p))
    return out

def socket_inodes(pid):
    found = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                found.add(target[8:-1])
    except OSError:
        pass
    return found

def addr(hexaddr, v6):
    ip, port = hexaddr.split(":")
    raw = bytes.fromhex(ip)
    if v6:
        words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
        import ipaddress
        return str(ipaddress.IPv6Address(b"".join(words))), int(port, 16)
    return ".".join(str(b) for b in raw[::-1]), int(port, 16)

ours = set().union(*(socket_inodes(p) for p in children(os.getpid())))
listening = []
for name, v6 in (("tcp", False), ("tcp6", True)):
    for line in open(f"/proc/net/{name}").read().splitlines()[1:]:
        cols = line.split()
        if cols[3] == "0A" and cols[9] in ours:  # LISTEN
            listening.append(addr(cols[1], v6))
print("LISTENING " + json.dumps(listening))
ray.shutdown()
"""


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc (Linux)")
def test_a_ray_instance_started_by_the_job_listens_on_loopback_only(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    p = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("LISTENING ")), None)
    assert p.returncode == 0 and line is not None, p.stderr[-3000:]
    listening = json.loads(line[len("LISTENING "):])
    assert len(listening) >= 4  # gcs, raylet, a worker, the agents: the probe sees them
    def loopback(ip: str) -> bool:
        a = ipaddress.ip_address(ip)
        return a.is_loopback or (a.version == 6 and a.ipv4_mapped is not None and a.ipv4_mapped.is_loopback)

    exposed = [a for a in listening if not loopback(a[0])]
    assert exposed == [], f"listening beyond loopback: {exposed} (all: {listening})"
