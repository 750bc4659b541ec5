"""Wall time of the full-grid job: the demo spec in local mode and on Ray, side by side, cold caches, with
per-stage times; then a written estimate of the paper grid's wall time on 1 and 8 GPUs. Last line: JSON.

    python bench/full_grid.py
    python bench/full_grid.py --gpu      # on a CUDA machine: also one ViT-B-16 model with 10,000 probe images
                                         # and 7 synthetic evaluation sets of 10,000 images x 10 conditions

The estimate combines the measured stage structure with throughput anchors (stated below, not measured
here unless --gpu ran): open_clip's plain bf16 forward on an H100 (20,364 / 6,536 / 1,770 img/s for
ViT-B-32 / B-16 / L-14), decomposition at >= 1.0x of it (bench/decompose.py), pruned evaluation at 0.45x
of naive per condition (bench/prune_eval.py), image decoding capped per node, and the LLM stage at the
endpoint's request budget (cached re-runs: 0 requests).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
H100_IMG_S = {"ViT-B-32": 20_364, "ViT-B-16": 6_536, "ViT-L-14": 1_770}
PAPER_MODELS = ["ViT-B-32", "ViT-B-32", "ViT-B-16", "ViT-B-16", "ViT-L-14", "ViT-L-14"]
HEADS = {"ViT-B-32": 48, "ViT-B-16": 48, "ViT-L-14": 64}
# Evaluation images per model in the paper grid: ImageNet val 50k, CIFAR-10/100 10k each, Food-101 25.25k,
# Country211 21.1k, Oxford-Pets 3.67k, ImageNet-A 7.5k, ImageNet-R 30k, FairFace val 10.95k,
# SocialCounterfactuals ~10k (a subset), MSR-VTT 1k x 12 frames, MSVD 670 x 12, DiDeMo 1k x 32.
EVAL_IMAGES = 50_000 + 20_000 + 25_250 + 21_100 + 3_670 + 7_500 + 30_000 + 10_950 + 10_000 + 12_000 + 8_040 + 32_000
CONDITIONS = 13  # original, high, low, moderate, 3 random, equal:high/low, 4 concept sets
PROBE_IMAGES = 50_000  # ImageNet val as the probe set


def run_demo(mode: str, root: Path) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-m", "ccs_dist.jobs.full_grid", "--quiet", "--out", str(root / "reports"), "--cache-dir", str(root / "cache")]
    if mode == "local":
        args.append("--local")
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    manifest = json.loads((root / "reports" / "demo" / "manifest.json").read_text())
    stages = {f"{s['model']}:{s['stage']}": s["seconds"] for s in manifest["stages"]}
    return {"mode": mode, "wall_s": round(wall, 1), "job_s": manifest["wall_s"], "stages": stages}


def estimate(gpus: int, rpm: float = 500.0, decode_img_s_per_node: float = 3_000.0) -> dict:
    """Paper-grid wall time on ``gpus`` GPUs (one model per GPU at a time), from the anchors above."""
    per_model = []
    layers = {"ViT-B-32": 12, "ViT-B-16": 12, "ViT-L-14": 24}
    for arch in PAPER_MODELS:
        decompose_s = max(PROBE_IMAGES / H100_IMG_S[arch], PROBE_IMAGES / decode_img_s_per_node)  # compute || decoding
        # Shared prefix: last-4-layer head sets cost (1 - 4/L) of a pass once plus 4/L per condition.
        passes = (1 - 4 / layers[arch]) + CONDITIONS * 4 / layers[arch]
        eval_s = max(EVAL_IMAGES * passes / H100_IMG_S[arch], EVAL_IMAGES / decode_img_s_per_node)
        per_model.append({"arch": arch, "decompose_s": decompose_s, "evaluate_s": eval_s})
    llm_requests = sum(HEADS[a] * 6 for a in PAPER_MODELS)  # 1 label + 5 verdicts per head, one judge
    llm_s = llm_requests / rpm * 60
    model_s = [m["decompose_s"] + m["evaluate_s"] for m in per_model]
    if gpus == 1:
        total = sum(model_s) + llm_s  # the LLM stage overlaps the next model's work; upper bound
    else:
        lanes = [0.0] * gpus
        for s in sorted(model_s, reverse=True):
            lanes[lanes.index(min(lanes))] += s
        total = max(lanes) + llm_s / len(PAPER_MODELS)  # the last model's scores gate its evaluation
    return {"gpus": gpus, "estimate_s": round(total), "llm_requests": llm_requests, "llm_s_at_rpm": round(llm_s),
            "model_stage_s": [round(s) for s in model_s]}


def gpu_scale_run() -> dict:
    """One ViT-B-16, 10,000 probe images, 7 synthetic evaluation sets x 10,000 images x 10 conditions (CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    from ccs_dist.decomposition.kernel import decompose
    from ccs_dist.models import load_model
    from ccs_dist.models.masked import encode_image_head_sets

    loaded = load_model("ViT-B-16", None, device="cuda", precision="bf16")
    images = torch.randn(256, 3, 224, 224, device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10_000 // 256 + 1):
        decompose(loaded, images, layers=4)
    torch.cuda.synchronize()
    dec_s = time.perf_counter() - t0
    sets = [[]] + [[f"L{l}.H{h}" for l in range(8, 12) for h in range(i, 12, 5)] for i in range(9)]
    t0 = time.perf_counter()
    for _ in range(7 * (10_000 // 256 + 1)):
        encode_image_head_sets(loaded, images, sets)
    torch.cuda.synchronize()
    eval_s = time.perf_counter() - t0
    return {"decompose_10k_s": round(dec_s, 2), "evaluate_7x10k_x10_s": round(eval_s, 2), "device": torch.cuda.get_device_name()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    out: dict = {"bench": "full_grid"}
    with tempfile.TemporaryDirectory() as tmp:
        local = run_demo("local", Path(tmp) / "local")
        print(f"demo, local mode, cold cache: {local['wall_s']} s wall ({local['job_s']} s in the job)", flush=True)
        for k, v in local["stages"].items():
            print(f"  {k:<40} {v:>7.1f} s")
        out["local"] = local
        if not args.skip_ray:
            ray_run = run_demo("ray", Path(tmp) / "ray")
            print(f"demo, Ray mode (local Ray instance started by the job), cold cache: {ray_run['wall_s']} s wall", flush=True)
            for k, v in ray_run["stages"].items():
                print(f"  {k:<40} {v:>7.1f} s   (includes waiting for a worker slot)")
            out["ray"] = ray_run
            out["ray_over_local"] = round(ray_run["wall_s"] / local["wall_s"], 3)
    if args.gpu:
        out["gpu_scale"] = gpu_scale_run()
        print(f"GPU scale run: {out['gpu_scale']}")
    out["estimate_1_gpu"] = estimate(1)
    out["estimate_8_gpus"] = estimate(8)
    print(
        f"paper grid estimate (anchored, see docstring): 1 GPU ~{out['estimate_1_gpu']['estimate_s'] / 3600:.1f} h, "
        f"8 GPUs ~{out['estimate_8_gpus']['estimate_s'] / 3600:.2f} h (6 models -> 6 GPUs busy; LLM "
        f"{out['estimate_1_gpu']['llm_requests']} requests ~{out['estimate_1_gpu']['llm_s_at_rpm'] / 60:.0f} min at 500 rpm)"
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
