"""Head attribution (one forward + one backward with per-head gates) vs one forward pass vs exact ablation.

Random-init ViT-B-32 (12 x 12 heads) on N random images, each with its own random unit text target, all in
one run:

* forward: one no-grad forward pass of the N images (the same CLS-only tower path);
* attribution: ``ccs_dist.attribution.maths.attribute_heads``: dy/dalpha for all 144 heads (target <= 3x forward);
* exact: ``exact_ablation_effects``: one masked pass per head (the masked engine shares the layers below the
  pruned one, so this is already cheaper than 144 full passes; the naive cost 144 x forward is printed too).

Also prints the agreement of attribution with the exact effects (Spearman over all (image, head) pairs, and
for the last layer). The last line is JSON.

    python bench/attribution.py [--n 8] [--repeats 3] [--arch ViT-B-32] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import logging

import torch
import torch.nn.functional as F

import ccs_dist
from ccs_dist.attribution import maths as A
from ccs_dist.models import forward
from timing import timed  # bench/timing.py (this folder is on sys.path when a bench runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--exact-repeats", type=int, default=1)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)

    loaded = ccs_dist.load_model(args.arch, None, device=args.device, precision="fp32")
    dev = loaded.device
    size = loaded.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.n, 3, size, size, generator=g).to(dev)
    text = F.normalize(torch.randn(args.n, loaded.embed_dim, generator=g), dim=-1).to(dev)
    L, H = loaded.num_layers, loaded.num_heads

    def fwd():
        with torch.no_grad():
            return A.target_score(forward.encode_image(loaded, images), text)

    # warm-up (allocator, kernels) for both paths
    fwd()
    A.attribute_heads(loaded, images[:2], text[:2])

    t_fwd, y = timed(fwd, args.repeats, dev)
    t_attr, scores = timed(lambda: A.attribute_heads(loaded, images, text), args.repeats, dev)
    t_exact, exact = timed(lambda: A.exact_ablation_effects(loaded, images, text), args.exact_repeats, dev)
    assert torch.allclose(scores.y_B, y, atol=1e-5), "attribution pass changed the unpruned y"
    rho_all = A.spearman(scores.attribution_BLH.cpu(), exact.cpu())
    rho_last = A.spearman(scores.attribution_BLH[:, -1].cpu(), exact[:, -1].cpu())
    rel_last = float(((scores.attribution_BLH[:, -1] - exact[:, -1]).abs().max() / exact[:, -1].abs().max()).cpu())

    result = {
        "arch": loaded.key,
        "device": str(dev),
        "n_images": args.n,
        "heads": L * H,
        "forward_s": round(t_fwd, 4),
        "attribution_s": round(t_attr, 4),
        "exact_s": round(t_exact, 4),
        "naive_exact_s_est": round((L * H + 1) * t_fwd, 4),
        "attribution_over_forward": round(t_attr / t_fwd, 3),
        "exact_over_attribution": round(t_exact / t_attr, 2),
        "naive_exact_over_attribution_est": round((L * H + 1) * t_fwd / t_attr, 2),
        "target_attribution_over_forward": 3.0,
        "meets_target": t_attr / t_fwd <= 3.0,
        "spearman_attr_vs_exact_all": round(rho_all, 4),
        "spearman_attr_vs_exact_last_layer": round(rho_last, 4),
        "max_err_last_layer_rel": round(rel_last, 4),
    }
    print(f"{loaded.key} on {dev}, {args.n} images, {L * H} heads")
    print(f"  one forward pass           {t_fwd * 1e3:9.1f} ms")
    print(f"  attribution (fwd + bwd)    {t_attr * 1e3:9.1f} ms  = {t_attr / t_fwd:.2f}x forward (target <= 3x)")
    print(f"  exact, one pass per head   {t_exact * 1e3:9.1f} ms  = {t_exact / t_attr:.1f}x attribution "
          f"(naive {L * H + 1} full passes ~ {(L * H + 1) * t_fwd / t_attr:.1f}x)")
    print(f"  Spearman(attribution, exact): all heads {rho_all:.4f}, last layer {rho_last:.4f}; "
          f"last-layer max |attr - exact| / max |exact| = {rel_last:.4f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
