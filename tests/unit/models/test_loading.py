"""Model loading: sources, QuickGELU for OpenAI weights, random-init flags, one-line errors."""

from __future__ import annotations

import pytest
import torch
from open_clip.transformer import QuickGELU

from ccs_dist.core.errors import UserError
from ccs_dist.models import load_model
from ccs_dist.models.loading import quick_gelu_needed


def test_tiny_model_sizes_and_metadata(tiny):
    assert (tiny.num_layers, tiny.num_heads, tiny.head_dim, tiny.width, tiny.embed_dim) == (3, 4, 16, 64, 32)
    meta = tiny.metadata()
    assert meta["random_init"] is True and meta["model"] == "ccs-tiny/random-init" and tiny.key == meta["model"]
    assert tiny.precision == "fp32"


def test_random_init_is_deterministic_per_seed():
    a, b, c = (load_model("ccs-tiny", device="cpu", seed=s) for s in (0, 0, 1))
    assert a.weights_hash == b.weights_hash != c.weights_hash


@pytest.mark.slow
def test_openai_tags_get_quick_gelu():
    assert quick_gelu_needed("ViT-B-32", "openai")
    assert quick_gelu_needed("ViT-L-14", "openai")
    assert not quick_gelu_needed("ViT-B-16", "laion2b_s34b_b88k")
    m = load_model("ViT-B-32-quickgelu", device="cpu")
    assert isinstance(m.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)


@pytest.mark.parametrize(
    "arch, pretrained, fragment",
    [
        ("ViT-B-33", None, "did you mean ViT-B-32"),
        ("ViT-B-32", "laion_bogus", "valid tags are openai"),
        ("ViT-B-32", "/nonexistent/ckpt.pt", "not found"),
    ],
)
def test_bad_model_inputs_are_one_line_user_errors(arch, pretrained, fragment):
    with pytest.raises(UserError) as e:
        load_model(arch, pretrained, device="cpu")
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_checkpoint_of_another_architecture(tmp_path, tiny):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    with pytest.raises(UserError, match="does not fit architecture ViT-B-32"):
        load_model("ViT-B-32", str(path), device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu():
    with pytest.raises(UserError, match="no CUDA GPU"):
        load_model("ccs-tiny", device="cuda")


def test_checkpoint_load_skips_the_wasted_init_and_gives_the_saved_weights(tmp_path):
    saved = load_model("ccs-tiny", device="cpu", seed=3)
    path = tmp_path / "tiny-seed3.pt"
    torch.save(saved.model.state_dict(), path)
    fills = torch.nn.init.normal_, torch.nn.init.kaiming_uniform_
    loaded = load_model("ccs-tiny", str(path), device="cpu")
    assert loaded.weights_hash == saved.weights_hash  # every parameter and buffer came from the file
    assert (torch.nn.init.normal_, torch.nn.init.kaiming_uniform_) == fills  # the build's no-op fills are undone
    assert load_model("ccs-tiny", device="cpu", seed=3).weights_hash == saved.weights_hash  # random init unchanged
    half = tmp_path / "tiny-seed3-fp16.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in saved.model.state_dict().items()}, half)
    widened = load_model("ccs-tiny", str(half), device="cpu").model.state_dict()
    assert all(v.dtype == saved.model.state_dict()[k].dtype for k, v in widened.items())  # fp32, as copying gave
    assert torch.equal(widened["visual.proj"], saved.model.state_dict()["visual.proj"].half().float())


def test_checkpoint_missing_a_parameter_is_refused(tmp_path, tiny):
    state = tiny.model.state_dict()
    state.pop("visual.proj")
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(UserError, match="does not fit architecture ccs-tiny"):
        load_model("ccs-tiny", str(path), device="cpu")
