"""Hugging Face transformers CLIP through ``load_model("hf:/folder")``: tokenizer, decomposition, pruning, TextSpan.

The folder (tests/support/hf_folder.py): a small random ``CLIPModel`` (``save_pretrained``) and a CLIP tokenizer in the
real format (``tokenizer.json``) built with the ``tokenizers`` backend from open_clip's own BPE vocabulary.
"""

from __future__ import annotations

import shutil

import open_clip
import pytest
import torch

from ccs_dist.core.errors import UserError
from ccs_dist.decomposition.kernel import decompose
from ccs_dist.models import load_model
from ccs_dist.models.head_attention import STOCK
from ccs_dist.models.head_proj import HeadProj
from ccs_dist.models.masked import encode_image_head_sets
from ccs_dist.models.hf_clip import save_open_clip_tokenizer
from tests.support.hf_folder import write_hf_clip

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    return write_hf_clip(tmp_path_factory.mktemp("hf-clip"))


@pytest.fixture(scope="module")
def hf(hf_folder):
    return load_model(f"hf:{hf_folder}", device="cpu")


def _images(n, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _rel_err(approx_BE, exact_BE):
    return float(((approx_BE - exact_BE).norm(dim=-1) / exact_BE.norm(dim=-1)).max())


def _reference(hf_folder):
    return transformers.CLIPModel.from_pretrained(str(hf_folder)).eval()


def test_the_handle_and_its_head_access(hf, hf_folder):
    assert hf.family == "hf-clip" and hf.key == f"hf:{hf_folder}" and not hf.random_init
    assert (hf.num_layers, hf.num_heads, hf.head_dim, hf.width, hf.embed_dim) == (3, 4, 16, 64, 24)
    layers = hf.visual.encoder.layers
    assert all(isinstance(layer.self_attn.out_proj, HeadProj) and layer.self_attn.out_proj is hf.heads[i]
               for i, layer in enumerate(layers))
    ref = _reference(hf_folder)
    assert [k.removeprefix("hf.") for k in hf.model.state_dict()] == list(ref.state_dict())
    x = _images(3)
    with torch.no_grad():
        ours = hf.model.encode_image(x)
        theirs = ref.visual_projection(ref.vision_model(pixel_values=x).pooler_output)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert hf.preprocess is not None and "hf-clip" == hf.family


def test_its_own_tokenizer_in_the_real_format_gives_open_clips_ids(hf, hf_folder):
    texts = ["a photo of a cat.", "Two DOGS playing   in the snow!"]
    ours, simple = hf.tokenizer(texts), open_clip.SimpleTokenizer()(texts)
    assert ours.shape == (2, 77)
    for row, ref in zip(ours, simple):
        n = int((ref != 0).sum())  # open_clip pads with 0, CLIP's HF tokenizer with end-of-text
        assert row[:n].tolist() == ref[:n].tolist()
    ref = _reference(hf_folder)
    with torch.no_grad():
        ours_TE = hf.model.encode_text(ours)
        theirs_TE = ref.text_projection(ref.text_model(input_ids=ours).pooler_output)
    torch.testing.assert_close(ours_TE, theirs_TE, rtol=1e-5, atol=1e-6)


def test_a_folder_without_tokenizer_files_is_a_one_line_user_error(hf_folder, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(hf_folder / f, bare / f)
    with pytest.raises(UserError, match=r"tokenizer\.json \(or vocab\.json \+ merges\.txt\)") as e:
        load_model(f"hf:{bare}", device="cpu")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="not a Hugging Face model folder"):
        load_model(f"hf:{tmp_path / 'nowhere'}", device="cpu")


@pytest.mark.parametrize("layers", [1, 3])
def test_terms_plus_rest_equal_encode_image(hf, layers):
    x = _images(3, seed=1)
    d = decompose(hf, x, layers=layers)
    assert d.heads.shape == (3, layers, 4, 24)
    assert _rel_err(d.heads.sum((1, 2)) + d.rest, d.embedding) <= 1e-5
    assert _rel_err(d.heads.sum((1, 2)) * 1.01 + d.rest, d.embedding) > 1e-4  # a wrong share breaks it
    with torch.no_grad():
        torch.testing.assert_close(d.embedding, hf.model.encode_image(x), rtol=1e-5, atol=1e-6)
    assert all(m.control == STOCK for m in hf.heads)


def test_one_head_term_by_hand(hf):
    """Head L2.H1 from the out-projection input, through ``post_layernorm`` linearised at the pooled CLS residual
    and ``visual_projection`` (bias-free), with the reference shares."""
    vision, proj = hf.visual, hf.model.hf.visual_projection
    x = _images(2, seed=2)
    seen = {}
    hooks = [vision.encoder.layers[2].self_attn.out_proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("z", a[0][:, 0].clone())),
             vision.post_layernorm.register_forward_pre_hook(lambda m, a: seen.__setitem__("r", a[0].clone()))]
    with torch.no_grad():
        hf.model.encode_image(x)
    for h in hooks:
        h.remove()
    d = decompose(hf, x, layers=[2])
    L, H, K = 3, 4, 16
    out_proj, ln = vision.encoder.layers[2].self_attn.out_proj, vision.post_layernorm
    with torch.no_grad():
        write = seen["z"][:, K : 2 * K] @ out_proj.weight[:, K : 2 * K].T + out_proj.bias / H
        r = seen["r"]
        mu, sigma = r.mean(-1, keepdim=True), (r.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt()
        s = 1.0 / ((2 * L + 1) * H)
        term = ((write - mu * s) * ln.weight / sigma + ln.bias * s) @ proj.weight.T
    torch.testing.assert_close(d.heads[:, 0, 1], term, rtol=1e-4, atol=1e-6)
    assert term.abs().max() > 1e-3


def test_pruning_equals_weight_zeroing(hf, hf_folder):
    x = _images(3, seed=3)
    sets = [[], ["L2.H1", "L0.H3"]]
    out = encode_image_head_sets(hf, x, sets)
    ref = _reference(hf_folder)
    with torch.no_grad():
        for layer, head in [(2, 1), (0, 3)]:
            ref.vision_model.encoder.layers[layer].self_attn.out_proj.weight[:, head * 16 : (head + 1) * 16] = 0
        naive = ref.visual_projection(ref.vision_model(pixel_values=x).pooler_output)
    assert (out[1] - naive).abs().max() <= 1e-5
    assert (out[1] - out[0]).abs().max() > 1e-3


def test_textspan_runs_on_the_hf_model(hf, tmp_path):
    from ccs_dist.artifacts.store import ArtifactStore
    from ccs_dist.data.images import resolve_image_set
    from ccs_dist.decomposition.config import DecomposeConfig
    from ccs_dist.decomposition.image_set import decompose_image_set
    from ccs_dist.spans.table import SpanConfig, spans_table
    from ccs_dist.text.embed import embed_texts
    from ccs_dist.text.pool import DescriptionPool

    cache = tmp_path / "cache"
    cache.mkdir()
    images = resolve_image_set("synthetic:12", cache)
    art = decompose_image_set(hf, images, ArtifactStore(cache), DecomposeConfig(layers=2, workers=0, progress=False))
    assert art.n_images == 12
    texts = tuple(f"a photo of a {w}" for w in ("cat", "dog", "red car", "tree", "boat", "house", "bird", "cup"))
    pool = DescriptionPool(texts=texts, source="test")
    table = spans_table(hf.key, art, pool, embed_texts(hf, texts), SpanConfig(rank=2, m=3))
    assert set(table["layer"]) == {1, 2} and table.height == 2 * 4 * 3  # m = 3 descriptions per head
    assert set(table["text"]) <= set(texts)


def test_open_clip_weights_in_hf_form_give_the_same_embeddings_and_decomposition(tiny, tmp_path):
    """ccs-tiny's weights converted to a transformers CLIPModel folder: the same image / text embeddings, the same
    per-head decomposition and the same pruned embeddings through both loaders."""
    from ccs_dist.models.hf_clip import open_clip_to_hf
    from ccs_dist.models.masked import encode_image_pruned

    folder = tmp_path / "converted"
    open_clip_to_hf(tiny.model, quick_gelu=True, text_heads=4).save_pretrained(str(folder))
    save_open_clip_tokenizer(folder)
    hf = load_model(f"hf:{folder}", device="cpu")
    x = _images(3, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(hf.model.encode_image(x), tiny.model.encode_image(x), rtol=1e-5, atol=1e-5)
        tokens = tiny.tokenizer(["a photo of a cat", "a diagram"])
        torch.testing.assert_close(hf.model.encode_text(hf.tokenizer(["a photo of a cat", "a diagram"])),
                                   tiny.model.encode_text(tokens), rtol=1e-4, atol=1e-5)
    d_hf, d_oc = decompose(hf, x, layers=2), decompose(tiny, x, layers=2)
    torch.testing.assert_close(d_hf.heads, d_oc.heads, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(d_hf.rest, d_oc.rest, rtol=1e-4, atol=1e-5)
    assert d_oc.heads.abs().max() > 1e-3
    torch.testing.assert_close(encode_image_pruned(hf, x, ["L2.H1", "L1.H0"]), encode_image_pruned(tiny, x, ["L2.H1", "L1.H0"]),
                               rtol=1e-4, atol=1e-5)


def _hub_cache(root, repo, folder, sha="0123456789abcdef0123456789abcdef01234567"):
    """``folder`` as the Hugging Face cache holds a downloaded repository (``models--OWNER--NAME``, ``refs/main``)."""
    entry = root / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, entry / "snapshots" / sha)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(sha)
    return entry / "snapshots" / sha


def test_a_hub_id_is_read_from_the_hugging_face_cache_offline(hf, hf_folder, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    _hub_cache(tmp_path / "hub", "someone/my-clip", hf_folder)
    loaded = load_model("hf:someone/my-clip", device="cpu")
    assert loaded.key == "hf:someone/my-clip" and not loaded.random_init
    images = _images(3)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.encode_image(images), hf.model.encode_image(images), rtol=0, atol=0)
    # null: a repository the cache does not hold (offline) is a one-line error naming the way out, not a folder error
    with pytest.raises(UserError) as e:
        load_model("hf:someone/other-clip", device="cpu")
    assert "hf download someone/other-clip" in str(e.value) and "\n" not in str(e.value)
    # a local folder of the same spelling wins over the hub id
    monkeypatch.chdir(tmp_path)
    (tmp_path / "someone").mkdir()
    shutil.copytree(hf_folder, tmp_path / "someone" / "other-clip")
    assert load_model("hf:someone/other-clip", device="cpu").num_layers == 3
