"""Plain ``encode_image`` (stock open_clip) vs the full decomposition (last 4 layers), side by side.

Same weights, batch and precision; the two are timed alternately and the median of each is kept. Then the
streaming decomposition of an image set runs in a fresh process for two values of N and prints each
process's peak RSS: memory must stay flat in N. Last line: JSON.

    python bench/decompose.py                       # CPU: ViT-B-32, batch 32
    python bench/decompose.py --models ViT-B-16,ViT-L-14 --batch 256 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(arch: str, batch: int, device: str, precision: str | None, reps: int) -> dict:
    import open_clip

    from ccs_dist.decompose import decompose
    from ccs_dist.models import load_model

    ours = load_model(arch, None, device=device, precision=precision)
    stock = open_clip.create_model(arch, pretrained=None).to(ours.device).eval()
    stock.load_state_dict(ours.model.state_dict())
    size = ours.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    images = torch.randn(batch, 3, size, size, device=ours.device)

    def plain():
        with torch.no_grad(), ours.autocast():
            stock.encode_image(images)

    def full():
        decompose(ours, images, layers=4)

    for fn in (plain, full):  # warm-up
        fn()
    times = {"plain": [], "decompose": []}
    for _ in range(reps):
        for name, fn in (("plain", plain), ("decompose", full)):
            _sync(ours.device)
            t0 = time.perf_counter()
            fn()
            _sync(ours.device)
            times[name].append(time.perf_counter() - t0)
    plain_ips = batch / statistics.median(times["plain"])
    dec_ips = batch / statistics.median(times["decompose"])
    d = decompose(ours, images[: min(batch, 8)], layers=4)
    rel = float(((d.heads.sum((1, 2)) + d.rest - d.embedding).norm(dim=-1) / d.embedding.norm(dim=-1)).max())
    return {
        "model": arch,
        "device": str(ours.device),
        "precision": ours.precision,
        "batch": batch,
        "plain_img_s": round(plain_ips, 2),
        "decompose_img_s": round(dec_ips, 2),
        "ratio": round(dec_ips / plain_ips, 3),
        "identity_max_rel_err": rel,
    }


def peak_rss_child(n: int, arch: str, device: str, batch: int, cache: str) -> dict:
    """Decompose synthetic:N in a fresh process; return its peak RSS and wall time."""
    code = f"""
import json, resource, time
from ccs_dist.decompose import DecomposeConfig, decompose_image_set
from ccs_dist.data.images import resolve_image_set
from ccs_dist.models import load_model
from ccs_dist.store import ArtifactStore
loaded = load_model({arch!r}, None, device={device!r})
images = resolve_image_set("synthetic:{n}", {cache!r})
t0 = time.perf_counter()
art = decompose_image_set(loaded, images, ArtifactStore({cache!r}),
                          DecomposeConfig(layers=4, batch_size={batch}, shard_size=256, num_workers=0, progress=False))
print(json.dumps({{"n": art.n_images, "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default=None, help="fp32 or bf16 (default bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rss-n", default="128,512", help="two image counts for the peak-RSS check")
    parser.add_argument("--rss-model", default="ViT-B-32")
    args = parser.parse_args()

    results = []
    for arch in args.models.split(","):
        r = throughput(arch, args.batch, args.device, args.precision, args.reps)
        results.append(r)
        print(
            f"{r['model']:>10} {r['device']} {r['precision']} batch {r['batch']}: plain {r['plain_img_s']} img/s, "
            f"decomposition {r['decompose_img_s']} img/s, ratio {r['ratio']} (identity rel. err {r['identity_max_rel_err']:.1e})",
            flush=True,
        )
    rss = []
    with tempfile.TemporaryDirectory() as cache:
        for n in (int(x) for x in args.rss_n.split(",")):
            r = peak_rss_child(n, args.rss_model, "cpu" if args.device == "auto" and not torch.cuda.is_available() else args.device, args.batch, cache)
            rss.append(r)
            print(f"streaming decomposition of {r['n']} images ({args.rss_model}): peak RSS {r['peak_rss_mb']:.0f} MB, {r['seconds']:.1f} s", flush=True)
    growth = rss[-1]["peak_rss_mb"] / rss[0]["peak_rss_mb"]
    print(f"peak RSS ratio N={rss[-1]['n']} / N={rss[0]['n']}: {growth:.3f}")
    print(json.dumps({"bench": "decompose", "throughput": results, "peak_rss": rss, "rss_ratio": round(growth, 3),
                      "target_ratio": 1.0, "aim_ratio": 1.2}))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    resource  # noqa: B018 (imported for the child code's benefit in the same interpreter family)
    main()
