"""The model zoo: plain ``encode_image`` vs the decomposition of the last L layers' heads, per model family.

Families, each at random init (real size by default): ``openclip-vit`` (open_clip's own VisionTransformer,
ViT-B-16), ``siglip2`` (ViT-B-16-SigLIP2: a timm trunk with attention pooling), ``eva02`` (EVA02-B-16) and
``hf-clip`` (a transformers ``CLIPModel``, ``CLIPConfig()`` defaults with patch size 16, written with a
tokenizer into a temporary folder and loaded through ``load_model("hf:FOLDER")``). Only the image tower is
timed, so SigLIP2's hub-hosted tokenizer is replaced by open_clip's own BPE one when its model is loaded.

For each family, on one random image batch, alternately (one warm-up each, then ``--repeats`` rounds): the
plain ``model.encode_image`` and ``decompose(loaded, images, layers=L)`` (the span stage's call). Kept: the
median seconds of each, their ratio decomposition / plain, and the identity error: the max over the batch of
|sum of head terms + rest - encode_image| / |encode_image| (fp32: should be <= 1e-5; reported either way).
``null_rel_err`` is the same error against ``encode_image`` of the horizontally flipped batch: a control
that shows the identity check can fail. ``--tiny``: the tiny test configs (``ccs-tiny``, ``ccs-tiny-attnpool``,
``ccs-tiny-eva02``, a tiny HF folder) for a quick smoke run; L is capped at a tower's depth.
Last line: JSON.

    python bench/zoo.py                                   # CPU, batch 8, all four families at real size
    python bench/zoo.py --families siglip2,eva02 --batch 64 --device cuda
    python bench/zoo.py --tiny --repeats 1 --batch 2       # smoke run (the unit test's)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched: every model is a random init

import torch  # noqa: E402
from timing import timed  # noqa: E402  bench/timing.py (this folder is on sys.path when a bench runs)

# family -> (real-size arch, tiny arch); "hf" is a CLIPModel folder written here
FAMILIES = {
    "openclip-vit": ("ViT-B-16", "ccs-tiny"),
    "siglip2": ("ViT-B-16-SigLIP2", "ccs-tiny-attnpool"),
    "eva02": ("EVA02-B-16", "ccs-tiny-eva02"),
    "hf-clip": ("hf", "hf"),
}
IDENTITY_TOL = 1e-5


@contextlib.contextmanager
def local_tokenizer():
    """open_clip's own BPE tokenizer for any arch (SigLIP2's would come from the hub; the text tower is not timed)."""
    import open_clip

    real = open_clip.get_tokenizer
    open_clip.get_tokenizer = lambda *args, **kwargs: open_clip.SimpleTokenizer()
    try:
        yield
    finally:
        open_clip.get_tokenizer = real


def write_hf_folder(folder: str, tiny: bool) -> None:
    """A random-init ``CLIPModel`` (ViT-B/16 vision: ``CLIPConfig()`` defaults, patch 16) and a CLIP tokenizer in
    the real format, built from open_clip's BPE vocabulary, saved into ``folder``."""
    from transformers import CLIPConfig, CLIPModel

    from ccs_dist.models.hf_clip import save_open_clip_tokenizer

    if tiny:
        cfg = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
                         vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                            num_attention_heads=4, image_size=32, patch_size=8),
                         projection_dim=24)
    else:
        cfg = CLIPConfig(vision_config=dict(patch_size=16))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        CLIPModel(cfg).save_pretrained(folder)
    save_open_clip_tokenizer(folder)


def load_family(family: str, tiny: bool, device: str, tmp: str):
    from ccs_dist.models import load_model

    arch = FAMILIES[family][1 if tiny else 0]
    if arch == "hf":
        folder = os.path.join(tmp, "hf-clip")
        write_hf_folder(folder, tiny)
        return load_model(f"hf:{folder}", device=device)
    with local_tokenizer() if family == "siglip2" else contextlib.nullcontext():
        return load_model(arch, None, device=device)


def image_size(loaded) -> int:
    if loaded.family == "hf-clip":
        return loaded.model.hf.config.vision_config.image_size
    size = loaded.visual.image_size
    return size[0] if isinstance(size, (tuple, list)) else size


def rel_err(approx_BE: torch.Tensor, exact_BE: torch.Tensor) -> float:
    return float(((approx_BE.float() - exact_BE.float()).norm(dim=-1) / exact_BE.float().norm(dim=-1)).max())


def measure(family: str, args, tmp: str) -> dict:
    from ccs_dist.decomposition.kernel import decompose

    loaded = load_family(family, args.tiny, args.device, tmp)
    layers = min(args.layers, loaded.num_layers)
    size = image_size(loaded)
    images_BCHW = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(loaded.device)

    def plain():
        with torch.no_grad(), loaded.autocast():
            return loaded.model.encode_image(images_BCHW)

    def full():
        return decompose(loaded, images_BCHW, layers=layers)

    runs = (("plain", plain), ("decompose", full))
    out = {name: fn() for name, fn in runs}  # warm-up
    times: dict[str, list[float]] = {"plain": [], "decompose": []}
    for _ in range(args.repeats):
        for name, fn in runs:
            seconds, out[name] = timed(fn, 1, loaded.device)
            times[name].append(seconds)
    d = out["decompose"]
    terms_BE = d.heads.sum((1, 2)) + d.rest
    with torch.no_grad(), loaded.autocast():
        flipped_BE = loaded.model.encode_image(images_BCHW.flip(-1))
    plain_s, decompose_s = statistics.median(times["plain"]), statistics.median(times["decompose"])
    return {
        "arch": loaded.arch if loaded.family != "hf-clip" else "hf:CLIPModel",
        "tower": loaded.family, "image_size": size, "num_layers": loaded.num_layers, "num_heads": loaded.num_heads,
        "plain_s": round(plain_s, 4), "decompose_s": round(decompose_s, 4), "ratio": round(decompose_s / plain_s, 3),
        "identity_rel_err": rel_err(terms_BE, out["plain"]), "null_rel_err": rel_err(terms_BE, flipped_BE),
        "batch": args.batch, "layers": layers, "device": str(loaded.device), "precision": loaded.precision,
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma list of {', '.join(FAMILIES)}")
    parser.add_argument("--layers", type=int, default=4, help="decompose the last L layers (capped at a tower's depth)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny test configs instead of the real sizes (smoke run)")
    args = parser.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}: choose from {list(FAMILIES)}")

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for family in families:
            r = results[family] = measure(family, args, tmp)
            ok = "ok" if r["identity_rel_err"] <= IDENTITY_TOL else f"ABOVE {IDENTITY_TOL:g}"
            print(f"{family:>12} {r['arch']} ({r['tower']}, {r['device']} {r['precision']}, batch {r['batch']}, "
                  f"last {r['layers']} of {r['num_layers']} layers, {r['torch_threads']} threads): plain {r['plain_s']:.4f} s, "
                  f"decomposition {r['decompose_s']:.4f} s, ratio {r['ratio']}; identity rel. err "
                  f"{r['identity_rel_err']:.1e} ({ok}), null (flipped batch) {r['null_rel_err']:.1e}", flush=True)
    load = round(os.getloadavg()[0], 2)
    print(f"load average (1 min): {load}")
    print(json.dumps({"bench": "zoo", "tiny": args.tiny, "repeats": args.repeats, "identity_tol": IDENTITY_TOL,
                      "cpu_count": os.cpu_count(), "load_average_1m": load, "families": results}))


if __name__ == "__main__":
    main()
