"""TopK SAE, sites, training (determinism, resume, artifact reuse) and safetensors I/O, on ccs-tiny at random init."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from ccs_dist.artifacts.store import ArtifactStore
from ccs_dist.core.errors import UserError
from ccs_dist.data.images import resolve_image_set
from ccs_dist.models import forward
from ccs_dist.sae.io import load_sae, save_sae
from ccs_dist.sae.model import SAEConfig, TopKSAE, quality
from ccs_dist.sae.sites import parse_site, run_site, site_activations
from ccs_dist.sae.train import SAETrainConfig, Trainer, batch_indices, train_sae


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return resolve_image_set("toy:48", tmp_path_factory.mktemp("img"))


def test_topk_codes_and_unit_decoder():
    sae = TopKSAE(16, SAEConfig(n_latents=40, k=3), "embedding").init_(0, torch.zeros(16))
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    codes, recon = sae(x)
    assert ((codes > 0).sum(-1) <= 3).all() and (codes >= 0).all()
    assert (codes > 0).sum() > 0
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(40))
    torch.testing.assert_close(recon, codes @ sae.W_dec + sae.b_dec)
    # an exact dictionary: x = 2 * row 7 is reconstructed by latent 7 alone when k = 1
    sae1 = TopKSAE(16, SAEConfig(n_latents=40, k=1), "embedding").init_(0, torch.zeros(16))
    c, r = sae1(2 * sae1.W_dec[7:8].detach())
    assert int(c.argmax()) == 7
    torch.testing.assert_close(r, 2 * sae1.W_dec[7:8].detach(), atol=1e-5, rtol=0)


def test_sites_and_activations(tiny):
    L = tiny.num_layers
    assert parse_site("resid_post:-1", L).name == f"resid_post:{L - 1}"
    for bad in ("resid_post:9", "resid", "resid_post:x", "mlp:1"):
        with pytest.raises(UserError):
            parse_site(bad, L)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        emb = forward.encode_image(tiny, x)
        # unedited passes equal encode_image at every site; the embedding site's activation is the embedding
        for site in [f"resid_post:{l}" for l in range(L)] + ["embedding"]:
            run = run_site(tiny, x, parse_site(site, L))
            torch.testing.assert_close(run.embedding_BE, emb, atol=1e-5, rtol=0)
        torch.testing.assert_close(site_activations(tiny, x, parse_site("embedding", L)), emb)
        # resid_post:{L-1} is the input of ln_post; an earlier site's edit changes the output
        last = site_activations(tiny, x, parse_site(f"resid_post:{L - 1}", L))
        torch.testing.assert_close(forward.pool_project(tiny, last[:, None]), emb, atol=1e-5, rtol=0)
        edited = run_site(tiny, x, parse_site("resid_post:0", L), lambda r: r * 0.5).embedding_BE
        assert (edited - emb).abs().max() > 1e-3


def test_train_deterministic_resumable_and_cached(tiny, images, tmp_path):
    cfg = SAETrainConfig(site="resid_post:-1", n_latents=64, k=4, steps=30, batch_size=16, lr=3e-3,
                         aux_k=16, dead_steps=5, checkpoint_every=7, image_batch_size=16)
    a = train_sae(tiny, images, ArtifactStore(tmp_path / "a"), cfg)
    b_store = ArtifactStore(tmp_path / "b")
    assert train_sae(tiny, images, b_store, cfg, stop_at_step=12) is None  # cut short: checkpoint at 12
    assert json.loads(next((tmp_path / "b" / "sae").glob("*.partial/checkpoint.json")).read_text())["step"] == 12
    b = train_sae(tiny, images, b_store, cfg)  # resumed
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(a.sae, name), getattr(b.sae, name), atol=0, rtol=0)
    # a different seed trains a different SAE (the equality above is not vacuous)
    c = train_sae(tiny, images, ArtifactStore(tmp_path / "c"), SAETrainConfig(**{**cfg.__dict__, "seed": 1}))
    assert (c.sae.W_dec - a.sae.W_dec).abs().max() > 1e-3
    q = a.quality
    assert set(q) >= {"explained_variance", "dead_share", "l0"} and 0 < q["l0"] <= 4 and 0 <= q["dead_share"] <= 1
    assert q["explained_variance"] > 0.3, q
    assert a.manifest["site"] == f"resid_post:{tiny.num_layers - 1}" and a.manifest["n_activations"] == len(images)
    again = train_sae(tiny, images, ArtifactStore(tmp_path / "a"), cfg)  # reused from the store
    assert again.path == a.path
    torch.testing.assert_close(again.sae.W_dec, a.sae.W_dec)
    assert not list((tmp_path / "a" / "sae").glob("*.partial"))


def test_batch_indices_cover_each_epoch():
    seen = torch.cat([batch_indices(10, 3, 0, s) for s in range(3)])
    assert len(set(seen.tolist())) == 9
    assert not torch.equal(batch_indices(10, 3, 0, 3), batch_indices(10, 3, 1, 3))


def test_trainer_learns_a_planted_dictionary():
    g = torch.Generator().manual_seed(0)
    dict_ = torch.nn.functional.normalize(torch.randn(32, 24, generator=g), dim=1)
    codes = torch.zeros(512, 32)
    idx = torch.randint(0, 32, (512, 2), generator=g)
    codes.scatter_(1, idx, torch.rand(512, 2, generator=g) + 0.5)
    x = codes @ dict_
    sae = TopKSAE(24, SAEConfig(n_latents=48, k=2), "embedding").init_(0, x.mean(0))
    before = quality(sae, x)
    tr = Trainer(sae, SAETrainConfig(n_latents=48, k=2, lr=3e-3, aux_k=8, dead_steps=20))
    for s in range(600):
        tr.step(x[batch_indices(512, 64, 0, s)])
    after = quality(sae, x)
    assert after["explained_variance"] > 0.97 and after["nmse"] < before["nmse"] / 5, (before, after)


def test_io_round_trip_and_user_errors(tmp_path):
    sae = TopKSAE(8, SAEConfig(n_latents=12, k=3), "resid_post:2").init_(4, torch.randn(8))
    path = save_sae(sae, tmp_path / "s.safetensors", {"note": "x"})
    back, meta = load_sae(path)
    assert back.site == "resid_post:2" and back.k == 3 and meta["note"] == "x"
    for n in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(back, n), getattr(sae, n), atol=0, rtol=0)
    # OpenAI-style names (nn.Linear layouts) load to the same SAE
    t = {"encoder.weight": sae.W_enc.detach().T.contiguous(), "latent_bias": sae.b_enc.detach(),
         "decoder.weight": sae.W_dec.detach().T.contiguous(), "pre_bias": sae.b_dec.detach()}
    save_file(t, tmp_path / "oai.safetensors", metadata={"site": "embedding", "k": "3"})
    oai, _ = load_sae(tmp_path / "oai.safetensors")
    torch.testing.assert_close(oai.W_enc, sae.W_enc)
    save_file({k: v for k, v in t.items() if k != "decoder.weight"}, tmp_path / "nodec.safetensors", metadata={"site": "embedding", "k": "3"})
    save_file(t, tmp_path / "nosite.safetensors", metadata={"k": "3"})
    save_file({**t, "pre_bias": torch.zeros(5)}, tmp_path / "shape.safetensors", metadata={"site": "embedding", "k": "3"})
    (tmp_path / "junk.safetensors").write_bytes(struct.pack("<Q", 3) + b"{{{")
    for name, needle in (("nodec", "no W_dec tensor"), ("nosite", "no site"), ("shape", "b_dec has shape"),
                         ("junk", "could not read"), ("absent", "not found")):
        with pytest.raises(UserError) as e:
            load_sae(tmp_path / f"{name}.safetensors")
        assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
