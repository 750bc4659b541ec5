"""Hugging Face transformers ``CLIPModel`` folders behind the same :class:`LoadedModel` handle.

``load_model("hf:/path/to/folder")`` or ``load_model("hf:owner/name")`` (the ``hf:`` prefix, as open_clip's
``hf-hub:``, names config and weights together) reads a folder written by ``CLIPModel.save_pretrained`` (or a hub
repository's snapshot in the Hugging Face cache) and the tokenizer files beside it
(``tokenizer.json``, or ``vocab.json`` + ``merges.txt``). :class:`HFCLIP` gives the model open_clip's
interface (``encode_image``, ``encode_text``, ``visual``, ``logit_scale``); its tower is a ``hf-clip``
:class:`~ccs_dist.models.towers.Tower`, so decomposition, TextSpan and pruning run on it unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ccs_dist.core.errors import UserError
from ccs_dist.models.head_proj import install_head_proj
from ccs_dist.models.towers import Tower

HF_PREFIX = "hf:"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class HFCLIP(nn.Module):
    """open_clip's CLIP interface over a transformers ``CLIPModel`` (held as ``hf``: state_dict keys ``hf.*``)."""

    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf

    @property
    def visual(self) -> nn.Module:
        return self.hf.vision_model

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.hf.logit_scale

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        vision = self.hf.vision_model(pixel_values=images)
        emb = self.hf.visual_projection(vision.pooler_output)
        return F.normalize(emb, dim=-1) if normalize else emb

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        text = self.hf.text_model(input_ids=tokens)  # causal: the padding after end-of-text changes nothing
        emb = self.hf.text_projection(text.pooler_output)
        return F.normalize(emb, dim=-1) if normalize else emb


class HFTokenizer:
    """open_clip's tokenizer call: ``tokenizer(texts) -> LongTensor [T, context_length]`` padded to the context."""

    def __init__(self, tok, context_length: int):
        self.tok, self.context_length = tok, context_length

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        n = context_length or self.context_length
        return self.tok(texts, padding="max_length", truncation=True, max_length=n, return_tensors="pt").input_ids


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")  # owner/name[@revision]
HUB_FILES = ("config.json", "*.safetensors", "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
             "special_tokens_map.json", "preprocessor_config.json")


def hf_folder(arch: str) -> Path:
    """The model folder ``hf:VALUE`` names: a local folder, or a hub id (``owner/name[@revision]``) fetched once
    into the Hugging Face cache (read from there offline, ``HF_HUB_OFFLINE=1``). A local path wins over a hub id."""
    value = arch[len(HF_PREFIX):]
    folder = Path(value).expanduser()
    if not folder.exists() and _HUB_ID.match(value):
        folder = _hub_snapshot(arch, value)
    if not (folder / "config.json").is_file():
        raise UserError(f"{arch}: {folder} is not a Hugging Face model folder (no config.json): give a folder written by "
                        "CLIPModel.save_pretrained, or a hub id owner/name")
    return folder


def _hub_snapshot(arch: str, value: str) -> Path:
    from huggingface_hub import snapshot_download  # open_clip's own dependency
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, _, revision = value.partition("@")
    try:
        folder = Path(snapshot_download(repo, revision=revision or None, allow_patterns=list(HUB_FILES)))
        if not any(folder.glob("*.safetensors")):  # an older repository: torch pickles only
            folder = Path(snapshot_download(repo, revision=revision or None, allow_patterns=[*HUB_FILES, "pytorch_model*.bin"]))
        return folder
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(f"{arch}: could not fetch {repo} from the Hugging Face hub or find it in its cache ({detail}): "
                        f"no network? download it elsewhere (hf download {repo}) and give hf:/path/to/the/folder") from e


def load_hf_tokenizer(folder: Path, context_length: int) -> HFTokenizer:
    """The folder's own CLIP tokenizer; a one-line UserError naming the files when none is there."""
    from transformers import CLIPTokenizerFast  # heavy optional dependency: imported only for hf: models

    if not (folder / "tokenizer.json").is_file() and not all((folder / f).is_file() for f in TOKENIZER_FILES[1:]):
        raise UserError(f"no tokenizer in {folder}: it needs tokenizer.json (or vocab.json + merges.txt) beside config.json; "
                        "save the tokenizer there (tokenizer.save_pretrained) - nothing is fetched from the hub")
    return HFTokenizer(CLIPTokenizerFast.from_pretrained(str(folder), local_files_only=True), context_length)


def hf_preprocess(folder: Path, image_size: int):
    """open_clip's eval transform at the folder's size, mean and std (``preprocessor_config.json``; OpenAI's otherwise)."""

    from open_clip.transform import image_transform

    mean, std = OPENAI_MEAN, OPENAI_STD
    cfg_path = folder / "preprocessor_config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))
    return image_transform(image_size, is_train=False, mean=mean, std=std)


def load_hf_clip(folder: Path) -> HFCLIP:
    from transformers import CLIPModel  # heavy optional dependency: imported only for hf: models

    try:
        hf = CLIPModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="sdpa")
    except (OSError, ValueError, RuntimeError) as e:
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()] or [type(e).__name__]
        raise UserError(f"could not read the CLIPModel in {folder} ({lines[0][:200]})") from e
    return HFCLIP(hf.float().eval())


def hf_tower(model: HFCLIP) -> Tower:
    """The ``hf-clip`` :class:`Tower` of a wrapped ``CLIPModel``; installs a :class:`HeadProj` in each layer."""
    vision = model.hf.vision_model
    layers = vision.encoder.layers
    heads = [install_head_proj(layer.self_attn, "out_proj", layer.self_attn.num_heads,
                               f"hf.vision_model.encoder.layers.{i}.self_attn.out_proj") for i, layer in enumerate(layers)]
    return Tower(
        family="hf-clip", heads=heads, embed_write=vision.pre_layrnorm, attn_scales=[None] * len(layers),
        mlp_writes=[layer.mlp for layer in layers], mlp_scales=[None] * len(layers), final_norm=vision.post_layernorm,
        pool="token", embed_dim=model.hf.visual_projection.out_features, post=[model.hf.visual_projection],
    )


def save_open_clip_tokenizer(folder: str | Path) -> None:
    """open_clip's own BPE vocabulary as a transformers CLIP tokenizer in ``folder`` (``tokenizer.json`` and the
    rest, as ``save_pretrained`` writes them): the ids are open_clip's, so an :func:`open_clip_to_hf` folder reads
    text as the open_clip model does."""
    import open_clip
    from transformers import CLIPTokenizer  # heavy optional dependency: imported only for hf: models

    simple = open_clip.SimpleTokenizer()
    merges = [tuple(pair) for pair, _ in sorted(simple.bpe_ranks.items(), key=lambda kv: kv[1])]
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}  # open_clip's names -> CLIP's
    CLIPTokenizer(vocab={names.get(k, k): v for k, v in simple.encoder.items()}, merges=merges).save_pretrained(str(folder))


def open_clip_to_hf(model: nn.Module, *, quick_gelu: bool, text_heads: int):
    """A transformers ``CLIPModel`` with the weights of an open_clip ``CLIP`` (ViT image tower, plain residual blocks).

    For checking the two loaders against each other (same weights, same embeddings and decomposition) and for
    handing an open_clip checkpoint to tools that read Hugging Face folders. ``text_heads``: the text tower's heads.
    """
    from transformers import CLIPConfig, CLIPModel  # heavy optional dependency: imported only for hf: models

    visual, sd = model.visual, {k: v.detach().clone() for k, v in model.state_dict().items()}
    vis_blocks = visual.transformer.resblocks
    D, E = visual.conv1.out_channels, visual.proj.shape[1]
    txt_w = model.token_embedding.weight.shape[1]
    act = "quick_gelu" if quick_gelu else "gelu"
    cfg = CLIPConfig(
        text_config=dict(hidden_size=txt_w, intermediate_size=model.transformer.resblocks[0].mlp.c_fc.out_features,
                         num_hidden_layers=len(model.transformer.resblocks), num_attention_heads=text_heads,
                         max_position_embeddings=model.positional_embedding.shape[0],
                         vocab_size=model.token_embedding.weight.shape[0], hidden_act=act),
        vision_config=dict(hidden_size=D, intermediate_size=vis_blocks[0].mlp.c_fc.out_features,
                           num_hidden_layers=len(vis_blocks), num_attention_heads=vis_blocks[0].attn.num_heads,
                           image_size=visual.image_size[0], patch_size=visual.patch_size[0], hidden_act=act),
        projection_dim=E,
    )
    out: dict[str, torch.Tensor] = {}

    def blocks(src: str, dst: str, n: int) -> None:
        for i in range(n):
            s, d = f"{src}.{i}", f"{dst}.{i}"
            for a, b in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                         ("mlp.c_proj", "mlp.fc2"), ("attn.out_proj", "self_attn.out_proj")):
                out[f"{d}.{b}.weight"], out[f"{d}.{b}.bias"] = sd[f"{s}.{a}.weight"], sd[f"{s}.{a}.bias"]
            for part, w, b in zip("qkv", sd[f"{s}.attn.in_proj_weight"].chunk(3), sd[f"{s}.attn.in_proj_bias"].chunk(3)):
                out[f"{d}.self_attn.{part}_proj.weight"], out[f"{d}.self_attn.{part}_proj.bias"] = w, b

    v = "vision_model"
    out[f"{v}.embeddings.patch_embedding.weight"] = sd["visual.conv1.weight"]
    out[f"{v}.embeddings.class_embedding"] = sd["visual.class_embedding"]
    out[f"{v}.embeddings.position_embedding.weight"] = sd["visual.positional_embedding"]
    for a, b in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        out[f"{v}.{b}.weight"], out[f"{v}.{b}.bias"] = sd[f"visual.{a}.weight"], sd[f"visual.{a}.bias"]
    blocks("visual.transformer.resblocks", f"{v}.encoder.layers", len(vis_blocks))
    out["visual_projection.weight"] = sd["visual.proj"].T.contiguous()
    t = "text_model"
    out[f"{t}.embeddings.token_embedding.weight"] = sd["token_embedding.weight"]
    out[f"{t}.embeddings.position_embedding.weight"] = sd["positional_embedding"]
    out[f"{t}.final_layer_norm.weight"], out[f"{t}.final_layer_norm.bias"] = sd["ln_final.weight"], sd["ln_final.bias"]
    blocks("transformer.resblocks", f"{t}.encoder.layers", len(model.transformer.resblocks))
    out["text_projection.weight"] = sd["text_projection"].T.contiguous()
    out["logit_scale"] = sd["logit_scale"]
    hf = CLIPModel(cfg)
    missing, unexpected = hf.load_state_dict(out, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]  # buffers HF derives itself
    if missing or unexpected:
        raise ValueError(f"open_clip -> HF conversion left keys: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return hf.eval()
