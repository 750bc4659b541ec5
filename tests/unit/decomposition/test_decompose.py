"""The decomposition identity, per-position terms, layer selection and the streaming artifact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.decomposition.kernel import decompose
from ccs_dist.decomposition.image_set import decompose_image_set
from ccs_dist.core.errors import UserError
from ccs_dist.data.images import resolve_image_set
from ccs_dist.models import load_model
from ccs_dist.models.head_attention import STOCK
from ccs_dist.artifacts.store import ArtifactStore


def _images(loaded, n, seed=0):
    size = loaded.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _max_rel_err(d):
    recon = d.heads.sum((1, 2)) + d.rest
    return float(((recon - d.embedding).norm(dim=-1) / d.embedding.norm(dim=-1)).max())


@pytest.mark.parametrize("arch, layers", [("ccs-tiny", 2), ("ccs-tiny", [0, 2]), pytest.param("ViT-B-32-quickgelu", 4, marks=pytest.mark.slow),
                                         pytest.param("ViT-B-16", 4, marks=pytest.mark.slow)])
def test_heads_plus_rest_equal_the_embedding(arch, layers):
    loaded = load_model(arch, device="cpu")
    d = decompose(loaded, _images(loaded, 2), layers=layers)
    n_layers = layers if isinstance(layers, int) else len(layers)
    assert d.heads.shape == (2, n_layers, loaded.num_heads, loaded.embed_dim)
    assert d.rest.shape == d.embedding.shape == (2, loaded.embed_dim)
    assert _max_rel_err(d) <= 1e-5
    with torch.no_grad():
        torch.testing.assert_close(d.embedding, loaded.model.encode_image(_images(loaded, 2)), rtol=1e-5, atol=1e-5)


def test_decomposition_is_not_trivially_the_residual(tiny):
    """Wrong shares break the identity: the test above can fail."""
    d = decompose(tiny, _images(tiny, 3), layers=3)
    assert d.heads.abs().sum() > 0 and d.rest.abs().sum() > 0
    wrong = d.heads.sum((1, 2)) * 1.01 + d.rest
    assert float(((wrong - d.embedding).norm(dim=-1) / d.embedding.norm(dim=-1)).max()) > 1e-4


def test_layer_selection(tiny):
    assert decompose(tiny, _images(tiny, 1), layers=1).layers == (2,)
    assert decompose(tiny, _images(tiny, 1), layers=[0, -1]).layers == (0, 2)
    for bad in (0, 4, [3], [-4]):
        with pytest.raises(UserError, match="out of range"):
            decompose(tiny, _images(tiny, 1), layers=bad)


def test_spatial_terms_sum_to_the_head_term(tiny):
    d = decompose(tiny, _images(tiny, 2), layers=2, spatial_heads=[(2, 1), (1, 3)])
    for (layer, head), s in d.spatial.items():
        assert s.shape == (2, 17, tiny.embed_dim)
        torch.testing.assert_close(s.sum(1), d.heads[:, d.layers.index(layer), head], rtol=1e-4, atol=1e-6)


def test_recording_leaves_no_state_behind(tiny):
    decompose(tiny, _images(tiny, 1), layers=3, spatial_heads=[(2, 0)])
    assert all(m.control == STOCK and m.control.keep_BH is None for m in tiny.heads)
    assert all(m._capture.cls_BHD is None and m._capture.spatial_BAPD is None for m in tiny.heads)


def test_streaming_artifact_matches_batch_decomposition_and_is_reused(tiny, cache_dir, caplog):
    images = resolve_image_set("synthetic:10", cache_dir)
    store = ArtifactStore(cache_dir)
    cfg = DecomposeConfig(layers=2, batch_size=4, shard_size=4, workers=0, progress=False)
    art = decompose_image_set(tiny, images, store, cfg)
    assert art.n_images == 10 and art.shard_names == ["00000", "00001", "00002"]
    assert art.ids() == [f"{i:06d}.png" for i in range(10)]
    batch = torch.stack([tiny.preprocess(images.load(i)) for i in range(10)])
    d = decompose(tiny, batch, layers=2)
    heads = np.concatenate(list(art.iter_heads()))
    np.testing.assert_allclose(heads, d.heads.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(art.head(2, 3), d.heads[:, 1, 3].numpy(), rtol=1e-5, atol=1e-6)
    caplog.set_level("INFO", logger="ccs_dist")
    again = decompose_image_set(tiny, images, store, cfg)
    assert again.path == art.path and "reused" in caplog.text


def test_interrupted_run_resumes_from_finished_shards(tiny, cache_dir, monkeypatch):
    from ccs_dist.decomposition import stream as dec  # where each batch is decomposed

    images = resolve_image_set("synthetic:12", cache_dir)
    store = ArtifactStore(cache_dir)
    cfg = DecomposeConfig(layers=1, batch_size=4, shard_size=4, workers=0, progress=False)
    calls = {"n": 0}
    real = dec.decompose

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(dec, "decompose", failing)
    with pytest.raises(KeyboardInterrupt):
        decompose_image_set(tiny, images, store, cfg)
    assert not list(cache_dir.glob("decompose/*/manifest.json")), "an interrupted run must not look complete"
    calls["n"] = -100
    art = decompose_image_set(tiny, images, store, cfg)
    assert calls["n"] == -100 + 1  # only the unfinished third shard was computed again
    assert art.n_images == 12


def test_unreadable_images_are_skipped_and_counted_or_fatal(tiny, tmp_path, cache_dir):
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (40, 40), (i * 60, 0, 0)).save(folder / f"ok{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    images = resolve_image_set(str(folder), cache_dir)
    store = ArtifactStore(cache_dir)
    with pytest.raises(UserError, match="unreadable image broken.jpg"):
        decompose_image_set(tiny, images, store, DecomposeConfig(layers=1, workers=0, progress=False, on_bad_image="error"))
    art = decompose_image_set(tiny, images, store, DecomposeConfig(layers=1, workers=0, progress=False))
    assert art.n_images == 3 and [s["id"] for s in art.manifest["skipped"]] == ["broken.jpg"]


def test_error_policy_is_not_fooled_by_an_artifact_of_a_skip_run(tiny, tmp_path, cache_dir):
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (40, 40), (i * 60, 0, 0)).save(folder / f"ok{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    images = resolve_image_set(str(folder), cache_dir)
    store = ArtifactStore(cache_dir)
    art = decompose_image_set(tiny, images, store, DecomposeConfig(layers=1, workers=0, progress=False))
    assert art.n_images == 3
    with pytest.raises(UserError, match="unreadable image broken.jpg"):  # reused artifact, same verdict as a fresh run
        decompose_image_set(tiny, images, store, DecomposeConfig(layers=1, workers=0, progress=False, on_bad_image="error"))
    again = decompose_image_set(tiny, images, store, DecomposeConfig(layers=1, workers=0, progress=False))
    assert again.path == art.path  # the skip run's artifact is still reused by skip runs


def test_empty_image_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no image files"):
        resolve_image_set(str(tmp_path / "empty"))


def test_torchvision_probe_set_reads_the_real_cifar_format(tiny, tmp_path, cache_dir):
    from ccs_dist.data.synthetic import write_cifar

    write_cifar(tmp_path, n_classes=10, per_class=2)  # pickled batches, as torchvision downloads them
    images = resolve_image_set(f"cifar10:{tmp_path}", cache_dir)
    assert len(images) == 20 and images.image_id(3) == "cifar10/3"
    assert images.load(0).size == (32, 32)
    art = decompose_image_set(tiny, images, ArtifactStore(cache_dir), DecomposeConfig(layers=1, workers=0, progress=False))
    assert art.n_images == 20
    with pytest.raises(UserError, match="could not open cifar100"):
        resolve_image_set(f"cifar100:{tmp_path}", cache_dir)


def test_huge_images_are_refused_before_decoding(tmp_path):
    from PIL import Image

    from ccs_dist.data import images as im_mod

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (40, 40)).save(folder / "ok.png")
    Image.new("L", (7000, 6000)).save(folder / "huge.png")  # 42 MP, over the 40 MP cap, under PIL's bomb limits
    images = im_mod.FolderImageSet(folder)
    assert images.load(images.paths.index(folder / "ok.png")).size == (40, 40)
    with pytest.raises(im_mod.ImageTooLarge, match="7000x6000 = 42 MP is over the 40 MP limit"):
        images.load(images.paths.index(folder / "huge.png"))


def test_one_head_term_by_hand_with_the_reference_share_convention(tiny):
    """Head L2.H1's term from its own q/k/v (not HeadAttention's capture), mapped through ln_post linearised at
    the final CLS residual, with the reference convention: each of the 2L + 1 residual terms takes 1/(2L + 1)
    of the mean and of beta, each head 1/H of its layer's share (and 1/H of the out-projection bias)."""
    import torch.nn.functional as F

    x = _images(tiny, 2, seed=5)
    layer, head = 2, 1
    visual = tiny.visual
    block = visual.transformer.resblocks[layer]
    seen = {}
    hooks = [block.register_forward_pre_hook(lambda m, a: seen.__setitem__("block_in", a[0].detach().clone())),
             visual.ln_post.register_forward_pre_hook(lambda m, a: seen.__setitem__("final", a[0].detach().clone()))]
    try:
        with torch.no_grad():
            tiny.model.encode_image(x)
    finally:
        for h in hooks:
            h.remove()
    d = decompose(tiny, x, layers=[layer])

    L, H, K = tiny.num_layers, tiny.num_heads, tiny.head_dim
    attn = block.attn
    with torch.no_grad():
        h_BPD = block.ln_1(seen["block_in"])
        q_BPD, k_BPD, v_BPD = F.linear(h_BPD, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        cols = slice(head * K, (head + 1) * K)
        a_BP = torch.softmax(torch.einsum("bk,bpk->bp", q_BPD[:, 0, cols], k_BPD[:, :, cols]) / K**0.5, dim=-1)
        z_BK = torch.einsum("bp,bpk->bk", a_BP, v_BPD[:, :, cols])
        write_BD = block.ls_1(z_BK @ attn.out_proj.weight[:, cols].T + attn.out_proj.bias / H)
        final = seen["final"]
        r_BD = final[:, 0] if final.dim() == 3 else final
        mu_B1 = r_BD.mean(-1, keepdim=True)
        sigma_B1 = (r_BD.var(-1, unbiased=False, keepdim=True) + visual.ln_post.eps).sqrt()
        share = 1.0 / ((2 * L + 1) * H)
        term_BE = ((write_BD - mu_B1 * share) * visual.ln_post.weight / sigma_B1 + visual.ln_post.bias * share) @ visual.proj
    torch.testing.assert_close(d.heads[:, 0, head], term_BE, rtol=1e-4, atol=1e-6)
    assert term_BE.abs().max() > 1e-3  # not trivially zero


def test_recorder_hook_names_are_the_module_paths(tiny):
    """Pinned: the residual writes are keyed by module path (a rename of a module path must show up here)."""
    from ccs_dist.decomposition.kernel import _Recorder

    with _Recorder(tiny, (2,), {}) as rec, torch.no_grad():
        tiny.model.encode_image(_images(tiny, 1))
    modules = dict(tiny.model.named_modules())
    assert set(rec.writes) == {"visual.ln_pre", "visual.ln_post"} | {
        f"visual.transformer.resblocks.{layer}.{m}" for layer in range(3) for m in ("ls_1", "ls_2")}
    assert set(rec.writes) <= set(modules)
    assert set(rec.captures) == {2} and all(m.name in modules for m in tiny.heads)
