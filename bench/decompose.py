"""Plain ``encode_image`` (stock open_clip) vs the full decomposition (last 4 layers), side by side.

``--input tensor`` (default): same weights, batch and precision; the two are timed alternately and the
median of each is kept. Then the streaming decomposition of an image set runs in a fresh process for two
values of N and prints each process's peak RSS: memory must stay flat in N.

``--input jpeg``: writes N JPEGs in ImageNet's size range (500x375 and the like, random smooth content plus
noise) and times the stage path end to end in a fresh process (``decompose_image_set`` on the folder, as
``ccs-dist decompose --images FOLDER`` runs it): ``end_to_end_img_s`` against ``model_only_img_s`` (the
decomposition of ready tensors, same batch) and their ratio, the share of the wall time the main process
waited on the loader, and the start-up time (process start to the first batch: imports, model build with
weights from a checkpoint file, weights hash, first batch). The load average is printed with the figures. Also the loader alone
(decode + preprocess, no model) for 1, 2 and 4 workers, and the CLI's wall time for the same folder.
Last line: JSON.

    python bench/decompose.py                       # CPU: ViT-B-32, batch 32
    python bench/decompose.py --models ViT-B-16,ViT-L-14 --batch 256 --device cuda
    python bench/decompose.py --input jpeg --n 512                                  # CPU
    python bench/decompose.py --input jpeg --models ViT-B-16 --batch 512 --n 20000 --workers 8 --device cuda
    python bench/decompose.py --input jpeg --models ViT-B-16 --batch 512 --n 20000 --workers 8 --device cuda --decode device
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

    from ccs_dist.decomposition.kernel import decompose
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
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.decomposition.image_set import decompose_image_set
from ccs_dist.data.images import resolve_image_set
from ccs_dist.models import load_model
from ccs_dist.artifacts.store import ArtifactStore
loaded = load_model({arch!r}, None, device={device!r})
images = resolve_image_set("synthetic:{n}", {cache!r})
t0 = time.perf_counter()
art = decompose_image_set(loaded, images, ArtifactStore({cache!r}),
                          DecomposeConfig(layers=4, batch_size={batch}, shard_size=256, workers=0, progress=False))
print(json.dumps({{"n": art.n_images, "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_jpegs(folder, n: int, seed: int = 0) -> None:
    """``n`` JPEGs of ImageNet's typical sizes: a smooth random colour field, a few shapes and sensor-like noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    sizes = [(500, 375), (375, 500), (500, 333), (500, 400), (400, 500), (469, 375)]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w, h = sizes[i % len(sizes)] if i % 7 else sizes[0]
        field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        draw = ImageDraw.Draw(field)
        for _ in range(4):
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            box = (x0, y0, x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2)))
            draw.ellipse(box, fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        pixels = np.asarray(field, dtype=np.int16) + rng.normal(0, 8, (h, w, 3)).astype(np.int16)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"img{i:06d}.jpg", quality=90)


def loader_only(folder: str, arch: str, batch: int, workers: int, device: str, decode: str) -> float:
    """img/s of decode + preprocess alone (the persistent loader, no model), batches delivered to ``device``."""
    from ccs_dist.data.images import FolderImageSet
    from ccs_dist.decomposition.loader import model_batches
    from ccs_dist.models import load_model

    loaded = load_model(arch, None, device=device)
    images = FolderImageSet(folder)
    t0 = time.perf_counter()
    seen = 0
    for b in model_batches(images, loaded.preprocess, [(0, range(len(images)))], batch, workers, loaded.device,
                           decode=decode):
        seen += len(b.indices) + len(b.bad)
    _sync(loaded.device)
    return seen / (time.perf_counter() - t0)


def end_to_end_child(folder: str, arch: str, weights: str | None, device: str, batch: int, workers: int, cache: str,
                     decode: str) -> dict:
    """The stage on a JPEG folder in a fresh process: wall, loader waits, and the start-up (process start to the
    first batch) split into imports, model build (weights loaded from ``weights``, as a user's run does), the
    weights hash (the cache key) and the loader's first batch."""
    code = f"""
import json, resource, sys, time
t_process = float(sys.argv[1])
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.decomposition.image_set import decompose_image_set
from ccs_dist.data.images import resolve_image_set
from ccs_dist.decomposition.loader import LoaderStats
from ccs_dist.models import load_model
from ccs_dist.artifacts.store import ArtifactStore
t_imported = time.time()
loaded = load_model({arch!r}, {weights!r}, device={device!r})
t_model = time.time()
loaded.weights_hash  # memoized: the stage's cache key reuses it
t_hash = time.time()
images = resolve_image_set({folder!r}, {cache!r})
stats = LoaderStats()
t_stats = time.time()
t0 = time.perf_counter()
art = decompose_image_set(loaded, images, ArtifactStore({cache!r}),
                          DecomposeConfig(layers=4, batch_size={batch}, workers={workers}, progress=False,
                                          decode={decode!r}), stats=stats)
wall = time.perf_counter() - t0
print(json.dumps({{"n": art.n_images, "stage_s": wall, "wait_s": stats.wait_s, "imports_s": t_imported - t_process,
                  "model_build_s": t_model - t_imported, "weights_hash_s": t_hash - t_model,
                  "first_batch_s": t_stats - t_hash + stats.first_batch_s,
                  "startup_s": t_stats - t_process + stats.first_batch_s,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code, repr(time.time())], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def save_weights(arch: str, path: str) -> str:
    """A checkpoint file of ``arch`` (its seeded random init): the end-to-end runs load weights like a user's."""
    from ccs_dist.models import load_model

    torch.save(load_model(arch, None, device="cpu").model.state_dict(), path)
    return path


def cli_wall(folder: str, arch: str, weights: str, device: str, batch: int, workers: int, cache: str) -> float:
    """Wall time of ``ccs-dist decompose`` on the folder, process start to exit."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ccs_dist.cli", "decompose", "--model", arch, "--pretrained", weights,
                    "--images", folder, "--cache-dir", cache,
                    "--batch-size", str(batch), "--workers", str(workers), "--device", device],
                   capture_output=True, text=True, check=True)
    return time.perf_counter() - t0


def jpeg_main(args) -> None:
    arch = args.models.split(",")[0]
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    workers = args.workers if args.workers is not None else max(1, min(4, (os.cpu_count() or 1) - 1))
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "jpegs")
        t0 = time.perf_counter()
        write_jpegs(__import__("pathlib").Path(folder), args.n)
        print(f"wrote {args.n} JPEGs in {time.perf_counter() - t0:.1f} s", flush=True)
        loader = {}
        for w in (1, 2, 4):
            loader[str(w)] = round(loader_only(folder, arch, args.batch, w, device, args.decode), 1)
            print(f"loader only (decode + preprocess), {w} worker(s): {loader[str(w)]} img/s", flush=True)
        model_only = throughput(arch, args.batch, device, args.precision, args.reps)
        print(f"model only ({arch}, {model_only['device']}, {model_only['precision']}, batch {args.batch}): "
              f"{model_only['decompose_img_s']} img/s", flush=True)
        weights = save_weights(arch, os.path.join(tmp, "weights.pt"))
        e2e = end_to_end_child(folder, arch, weights, device, args.batch, workers, os.path.join(tmp, "cache-stage"), args.decode)
        e2e_ips = e2e["n"] / e2e["stage_s"]
        print(f"end to end (stage, {workers} workers): {e2e_ips:.1f} img/s over {e2e['stage_s']:.1f} s; waiting on the loader "
              f"{e2e['wait_s'] / e2e['stage_s']:.1%} of it; start-up {e2e['startup_s']:.1f} s (imports {e2e['imports_s']:.1f} s, "
              f"model build with weights {e2e['model_build_s']:.1f} s, weights hash {e2e['weights_hash_s']:.1f} s, "
              f"first batch {e2e['first_batch_s']:.1f} s)", flush=True)
        cli_s = cli_wall(folder, arch, weights, device, args.batch, workers, os.path.join(tmp, "cache-cli"))
        print(f"ccs-dist decompose on the folder: {cli_s:.1f} s wall, process start to exit", flush=True)
    ratio = e2e_ips / model_only["decompose_img_s"]
    print(f"end-to-end / model-only: {ratio:.3f} (load average {os.getloadavg()[0]:.2f})")
    print(json.dumps({
        "bench": "decompose", "input": "jpeg", "model": arch, "device": model_only["device"], "precision": model_only["precision"],
        "n_images": args.n, "batch": args.batch, "workers": workers, "decode": args.decode, "cpu_count": os.cpu_count(),
        "end_to_end_img_s": round(e2e_ips, 2), "model_only_img_s": model_only["decompose_img_s"], "ratio": round(ratio, 3),
        "loader_only_img_s_by_workers": loader, "loader_wait_share": round(e2e["wait_s"] / e2e["stage_s"], 3),
        "startup_s": round(e2e["startup_s"], 2), "imports_s": round(e2e["imports_s"], 2), "model_build_s": round(e2e["model_build_s"], 2),
        "weights_hash_s": round(e2e["weights_hash_s"], 2), "first_batch_s": round(e2e["first_batch_s"], 2),
        "stage_s": round(e2e["stage_s"], 2), "cli_wall_s": round(cli_s, 2), "peak_rss_mb": round(e2e["peak_rss_mb"]),
        "target_ratio": 0.5, "stretch_ratio": 0.8, "load_average_1m": round(os.getloadavg()[0], 2),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default=None, help="fp32 or bf16 (default bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rss-n", default="128,512", help="two image counts for the peak-RSS check")
    parser.add_argument("--rss-model", default="ViT-B-32")
    parser.add_argument("--input", choices=("tensor", "jpeg"), default="tensor")
    parser.add_argument("--n", type=int, default=512, help="JPEGs written for --input jpeg")
    parser.add_argument("--workers", type=int, default=None, help="loader workers of the end-to-end run (--input jpeg)")
    parser.add_argument("--decode", choices=("cpu", "device"), default="cpu", help="where JPEGs are decoded (--input jpeg)")
    args = parser.parse_args()
    if args.input == "jpeg":
        jpeg_main(args)
        return

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
