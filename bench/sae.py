"""SAE training throughput (ours vs a plain PyTorch TopK loop on the same tensors) and latent attribution cost.

In one run, on a model at random init (default ``ccs-tiny``; ``--arch ViT-B-32 --n-latents 32768 --k 64`` for the
issue's size, on a GPU):

* training: ``ccs_dist.sae.train.Trainer.step`` (TopK, normalised MSE, AuxK, decoder-gradient projection and
  renormalisation) vs a plain loop (TopK, MSE, Adam, nothing else) over the same activation tensor, same batches;
  activations per second each;
* attribution: ``ccs_dist.sae.attribution.act_x_grad`` (one forward + one backward) and ``score_latents`` (all five
  rankings) per image, against one no-grad forward pass of the same images.

The last line is JSON.

    python bench/sae.py [--arch ccs-tiny] [--n-latents 4096] [--k 32] [--batch 1024] [--steps 50] [--n 16] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import logging

import torch
import torch.nn.functional as F

import ccs_dist
from ccs_dist.attribution.maths import target_score
from ccs_dist.models import forward
from ccs_dist.sae import attribution as SA
from ccs_dist.sae.model import SAEConfig, TopKSAE
from ccs_dist.sae.sites import parse_site, site_activations
from ccs_dist.sae.train import SAETrainConfig, Trainer, batch_indices
from timing import timed  # bench/timing.py (this folder is on sys.path when a bench runs)


def plain_loop(x_ND: torch.Tensor, n_latents: int, k: int, lr: float, batches: list[torch.Tensor]) -> None:
    """The textbook TopK SAE step: encode, keep the top k, decode, MSE, Adam."""
    d = x_ND.shape[1]
    g = torch.Generator().manual_seed(0)
    W_dec = torch.nn.Parameter(F.normalize(torch.randn(n_latents, d, generator=g), dim=1).to(x_ND.device))
    W_enc = torch.nn.Parameter(W_dec.detach().T.clone())
    b_enc = torch.nn.Parameter(torch.zeros(n_latents, device=x_ND.device))
    b_dec = torch.nn.Parameter(x_ND.mean(0).clone())
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=lr)
    for idx in batches:
        x = x_ND[idx]
        pre = (x - b_dec) @ W_enc + b_enc
        top = pre.topk(k, dim=-1)
        codes = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        loss = ((codes @ W_dec + b_dec - x) ** 2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="ccs-tiny")
    ap.add_argument("--site", default="resid_post:-1")
    ap.add_argument("--n-latents", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--n", type=int, default=16, help="images for the attribution timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    loaded = ccs_dist.load_model(args.arch, None, device=args.device, precision="fp32")
    dev = loaded.device
    site = parse_site(args.site, loaded.num_layers)
    size = loaded.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.n, 3, size, size, generator=g).to(dev)
    text = F.normalize(torch.randn(args.n, loaded.embed_dim, generator=g), dim=-1).to(dev)

    # activations: the site's real activations of the images, tiled with noise to a buffer of 4 batches
    acts = site_activations(loaded, images, site)
    reps = -(-4 * args.batch // acts.shape[0])
    x_ND = acts.repeat(reps, 1) + 0.1 * acts.std() * torch.randn(reps * acts.shape[0], acts.shape[1], generator=g).to(dev)
    n = x_ND.shape[0]
    cfg = SAETrainConfig(site=site.name, n_latents=args.n_latents, k=args.k, batch_size=args.batch, lr=1e-3,
                         aux_k=min(512, args.n_latents), dead_steps=1)  # dead_steps=1: AuxK runs every step (its worst case)
    batches = [batch_indices(n, args.batch, 0, s).to(dev) for s in range(args.steps)]

    def ours():
        sae = TopKSAE(x_ND.shape[1], SAEConfig(args.n_latents, args.k), site.name).init_(0, x_ND.mean(0).cpu()).to(dev)
        tr = Trainer(sae, cfg)
        for idx in batches:
            tr.step(x_ND[idx])

    ours_nominal = SAETrainConfig(**{**cfg.__dict__, "dead_steps": 10 ** 9})  # no latent dead yet: AuxK idle

    def ours_no_aux():
        sae = TopKSAE(x_ND.shape[1], SAEConfig(args.n_latents, args.k), site.name).init_(0, x_ND.mean(0).cpu()).to(dev)
        tr = Trainer(sae, ours_nominal)
        for idx in batches:
            tr.step(x_ND[idx])

    def plain():
        plain_loop(x_ND, args.n_latents, args.k, 1e-3, batches)

    ours(), plain()  # warm-up
    t_ours, _ = timed(ours, args.repeats, dev)
    t_ours_idle, _ = timed(ours_no_aux, args.repeats, dev)
    t_plain, _ = timed(plain, args.repeats, dev)
    acts_total = args.steps * min(args.batch, n)

    sae = TopKSAE(acts.shape[1], SAEConfig(args.n_latents, args.k), site.name).init_(1, acts.mean(0).cpu()).to(dev)

    def fwd():
        with torch.no_grad():
            return target_score(forward.encode_image(loaded, images), text)

    fwd(), SA.act_x_grad(loaded, sae, images[:2], text[:2])
    t_fwd, y = timed(fwd, args.repeats, dev)
    t_axg, (y2, _, _) = timed(lambda: SA.act_x_grad(loaded, sae, images, text), args.repeats, dev)
    t_all, _ = timed(lambda: SA.score_latents(loaded, sae, images, text), args.repeats, dev)
    assert torch.allclose(y, y2, atol=1e-5), "the attribution pass changed y"

    result = {
        "arch": loaded.key, "device": str(dev), "site": site.name, "n_latents": args.n_latents, "k": args.k,
        "batch": args.batch, "steps": args.steps,
        "train_ours_acts_per_s": round(acts_total / t_ours, 1),
        "train_ours_aux_idle_acts_per_s": round(acts_total / t_ours_idle, 1),
        "train_plain_acts_per_s": round(acts_total / t_plain, 1),
        "ours_over_plain_time": round(t_ours / t_plain, 3),
        "ours_aux_idle_over_plain_time": round(t_ours_idle / t_plain, 3),
        "n_images": args.n,
        "forward_ms_per_image": round(1e3 * t_fwd / args.n, 4),
        "act_x_grad_ms_per_image": round(1e3 * t_axg / args.n, 4),
        "all_rankings_ms_per_image": round(1e3 * t_all / args.n, 4),
        "act_x_grad_over_forward": round(t_axg / t_fwd, 3),
        "all_rankings_over_forward": round(t_all / t_fwd, 3),
    }
    print(f"{loaded.key} on {dev}, SAE {args.n_latents} latents, k={args.k}, at {site.name}")
    print(f"  training, ours (AuxK every step)  {acts_total / t_ours:12.0f} activations/s")
    print(f"  training, ours (AuxK idle)        {acts_total / t_ours_idle:12.0f} activations/s")
    print(f"  training, plain PyTorch loop      {acts_total / t_plain:12.0f} activations/s")
    print(f"  one forward pass                  {1e3 * t_fwd / args.n:10.3f} ms/image")
    print(f"  act x grad (fwd + bwd)            {1e3 * t_axg / args.n:10.3f} ms/image = {t_axg / t_fwd:.2f}x forward")
    print(f"  all five rankings                 {1e3 * t_all / args.n:10.3f} ms/image = {t_all / t_fwd:.2f}x forward")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
