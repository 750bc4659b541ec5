"""Load an open_clip model and install the head-level attention module in its image tower.

Sources: zoo names with pretrained tags (``"ViT-B-16", "laion2b_s34b_b88k"``), ``"openai"`` tags (built with
the QuickGELU activation their weights need), ``hf-hub:`` ids, local checkpoint files, and ``None`` for a
random init (deterministic per seed, and flagged loudly in logs and metadata).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import logging
import os
import socket
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import torch
from torch import nn

from ccs_dist.core.errors import UserError
from ccs_dist.models.head_attention import HeadAttention, install_head_attention
from ccs_dist.models.hf_clip import HF_PREFIX, hf_folder, hf_preprocess, hf_tower, load_hf_clip, load_hf_tokenizer
from ccs_dist.models.tiny_zoo import register_tiny_timm
from ccs_dist.models.towers import Tower, timm_tower
from ccs_dist.core.weights import CHECKPOINT_SUFFIXES, SCHEMA_PREFIXES, has_no_weights, model_key

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(eq=False)
class LoadedModel:
    """An open_clip CLIP model ready for decomposition and masked evaluation.

    ``heads[l]`` is the :class:`HeadAttention` of image-encoder layer ``l``. Sizes: ``num_layers`` (L),
    ``num_heads`` (H), ``head_dim`` (K), ``width`` (D, residual width), ``embed_dim`` (E, joint space).
    """

    model: nn.Module
    preprocess: Callable
    tokenizer: Callable
    arch: str
    pretrained: str | None
    key: str
    device: torch.device
    precision: str
    seed: int | None
    heads: list[HeadAttention] = field(repr=False)
    tower: Tower | None = field(default=None, repr=False)  # None: open_clip's own VisionTransformer

    @property
    def family(self) -> str:
        """``open_clip-vit``, or the :class:`~ccs_dist.models.towers.Tower` family (``timm-vit``, ``timm-eva``, ``hf-clip``)."""
        return "open_clip-vit" if self.tower is None else self.tower.family

    @property
    def visual(self) -> nn.Module:
        return self.model.visual

    @property
    def random_init(self) -> bool:
        return self.pretrained is None

    @property
    def num_layers(self) -> int:
        return len(self.heads)

    @property
    def num_heads(self) -> int:
        return self.heads[0].num_heads

    @property
    def head_dim(self) -> int:
        return self.heads[0].head_dim

    @property
    def width(self) -> int:
        return self.heads[0].embed_dim

    @property
    def embed_dim(self) -> int:
        if self.tower is not None:
            return self.tower.embed_dim
        return int(self.visual.proj.shape[1])

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when precision is ``bf16``; a no-op otherwise."""
        if self.precision == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def weights_hash(self) -> str:
        """sha256 over every parameter and buffer (names, shapes, bytes): the cache key of the weights."""
        if getattr(self, "_weights_hash", None) is None:
            h = hashlib.sha256()
            for name, t in sorted(self.model.state_dict().items()):
                t = t.detach().to("cpu").contiguous()
                h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
                if t.numel():  # the buffer itself, not a copy: hashlib reads it without holding the GIL
                    h.update(t.reshape(-1).view(torch.uint8).numpy())
            self._weights_hash = h.hexdigest()
        return self._weights_hash

    def metadata(self) -> dict[str, Any]:
        """What every output records about the model it came from."""
        import open_clip

        return {
            "model": self.key,
            "arch": self.arch,
            "pretrained": self.pretrained,
            "random_init": self.random_init,
            "seed": self.seed,
            "precision": self.precision,
            "device": str(self.device),
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "embed_dim": self.embed_dim,
            "open_clip": open_clip.__version__,
            "torch": torch.__version__,
        }


@dataclass(frozen=True)
class BundledWeights:
    """Weights shipped as package data: (arch, tag) -> file and its sha256 (checked before every load)."""

    arch: str
    tag: str
    file: str
    sha256: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file


WEIGHTS_DIR = Path(__file__).parent / "weights"
# ccs-toy/planted_v2: what `ccs-dist train-toy` writes with its defaults (seed 0, 1,000 + 150 steps, 2 CPU threads), bit for bit
BUNDLED = (
    BundledWeights("ccs-toy", "planted_v2", "ccs-toy-planted_v2.safetensors",
                   "1174ad5f186e5d064a6f2ffbe84da43d6a1337c193a8bf19256c1a54608c6b38"),
    # ccs-plant (world v3, docs/planted-world.md), fp16: `ccs-dist train-toy --world plant --seed {0,1,2} --threads 1 [--control]`
    BundledWeights("ccs-plant", "plant_s0", "ccs-plant-plant_s0.safetensors",
                   "1439076cd2b850b596fbbb9214dd4c8de237461787f60694be795f3f91ffa412"),
    BundledWeights("ccs-plant", "contrastive_s0", "ccs-plant-contrastive_s0.safetensors",
                   "e01cd38dd39119c0177848136f628cf20351d7dd5ee9c30a225df3976f180053"),
    BundledWeights("ccs-plant", "plant_s1", "ccs-plant-plant_s1.safetensors",
                   "153ee8245e0051df5b23e8f424183cf724ea6d49204a16e186680efd449bba27"),
    BundledWeights("ccs-plant", "contrastive_s1", "ccs-plant-contrastive_s1.safetensors",
                   "2d234ceb5cac8144be32e29c55fb3a3e109404e296185b6f5f0742423e4e3629"),
    BundledWeights("ccs-plant", "plant_s2", "ccs-plant-plant_s2.safetensors",
                   "12f32553295f9e81db89d13bb79d6bbe85bd3d88ed3b815aa67b8aba6332f30a"),
    BundledWeights("ccs-plant", "contrastive_s2", "ccs-plant-contrastive_s2.safetensors",
                   "cdf1a271732432a58661f19e8bc5bcca704e182c9e1472bd47ef6b95375c46ba"),
)


def _register_project_configs() -> None:
    import open_clip
    from open_clip import pretrained as oc_pretrained

    register_tiny_timm()  # before the configs that name them
    if "ccs-tiny" not in open_clip.list_models() or "ccs-tiny-attnpool" not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)
    for b in BUNDLED:  # open_clip reads a tag whose config names a local ``file`` without any download
        oc_pretrained._PRETRAINED.setdefault(b.arch, {}).setdefault(b.tag, oc_pretrained._pcfg(file=str(b.path)))


def _bundled(arch: str, tag: str | None) -> BundledWeights | None:
    return next((b for b in BUNDLED if (b.arch, b.tag) == (arch, tag)), None)


_VERIFIED: set[tuple[str, int]] = set()


def verify_bundled(bundled: BundledWeights) -> None:
    """Check the shipped file against its sha256 once per process (size + mtime key the memo)."""
    path = bundled.path
    if not path.is_file():
        raise UserError(f"bundled weights {path} are missing: reinstall ccs_dist (or retrain with ccs-dist train-toy)")
    memo = (str(path), path.stat().st_mtime_ns)
    if memo in _VERIFIED:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != bundled.sha256:
        raise UserError(f"bundled weights {path} have sha256 {digest[:12]}..., expected {bundled.sha256[:12]}...: "
                        "the file is damaged or replaced; reinstall ccs_dist")
    _VERIFIED.add(memo)


# torch.nn.init's in-place fills: what a model's constructor spends its time in (10^8 random draws for a ViT-B)
_INIT_FILLS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
               "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")


@contextlib.contextmanager
def skipped_random_init():
    """Build a model whose every parameter and buffer a strict checkpoint load then replaces: nn.init's fills
    leave the (uninitialised, untouched) tensors as they are instead of drawing values only to discard them,
    and open_clip's checkpoint load takes the loaded tensors as they are (``assign``) instead of copying them
    into those. Only for that case: the random-init path must draw exactly as before (its results are pinned
    by seed).
    """
    from open_clip import factory

    saved = {name: getattr(torch.nn.init, name) for name in _INIT_FILLS}
    load_checkpoint = factory.load_checkpoint

    def keep(tensor, *args, **kwargs):
        return tensor

    def load_assigning(model, *args, **kwargs):
        model.load_state_dict = functools.partial(type(model).load_state_dict, model, assign=True)
        try:
            return load_checkpoint(model, *args, **kwargs)
        finally:
            del model.load_state_dict
            model.float()  # what copying into the fp32 build gave: a half-precision checkpoint is widened

    for name in saved:
        setattr(torch.nn.init, name, keep)
    factory.load_checkpoint = load_assigning
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)
        factory.load_checkpoint = load_checkpoint


def _drop_open_clip_random_init(record: logging.LogRecord) -> bool:
    """open_clip's own "No pretrained weights loaded" line on the root logger (ours replaces it)."""
    return not record.getMessage().startswith("No pretrained weights loaded")


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise UserError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device} requested but no CUDA GPU is visible: use --device cpu (or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"device {device} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    return dev


def _resolve_precision(precision: str | None, device: torch.device) -> str:
    if precision is None:
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16"):
        raise UserError(f"unknown precision {precision!r}: use fp32 or bf16")
    if precision == "bf16" and device.type != "cuda":
        log.warning("bf16 autocast is only used on CUDA; running fp32 on %s", device)
        return "fp32"
    return precision


def _check_arch(arch: str) -> None:
    import open_clip

    if arch.startswith(SCHEMA_PREFIXES):
        return
    known = open_clip.list_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=4, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see open_clip.list_models()"
        raise UserError(f"unknown architecture {arch!r}: {hint}")


def _classify_pretrained(arch: str, pretrained: str | None) -> tuple[str, str | None]:
    """-> (kind, value) with kind one of none / tag / file."""
    import open_clip

    if arch.startswith(SCHEMA_PREFIXES):
        return "schema", None  # the id names config and weights together
    if has_no_weights(pretrained):
        return "none", None
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if pretrained in tags:
        return "tag", pretrained
    path = Path(pretrained).expanduser()
    if path.is_file():
        return "file", str(path)
    if path.suffix in CHECKPOINT_SUFFIXES or "/" in pretrained or path.exists():
        raise UserError(f"checkpoint file {pretrained} not found: give an existing .pt/.bin/.safetensors file")
    valid = ", ".join(tags) if tags else "none (this architecture has no published tags; give a checkpoint file)"
    raise UserError(f"unknown pretrained tag {pretrained!r} for {arch}: valid tags are {valid}, or none for random init")


def _weights_error(e: Exception, kind: str, arch: str, pretrained: str | None, value: str | None) -> Exception:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()] or [type(e).__name__]
    detail = next((ln for ln in lines if "size mismatch" in ln or "Missing key" in ln), lines[0])[:200]
    if kind == "file":
        if isinstance(e, (RuntimeError, AssertionError, KeyError, ValueError)):
            return UserError(f"checkpoint {value} does not fit architecture {arch} ({detail}): pick the architecture it was trained with")
        return UserError(f"could not read checkpoint {value} ({detail}): give a torch .pt/.bin or .safetensors state dict")
    if isinstance(e, (OSError, ValueError, RuntimeError)):
        where = arch if kind == "schema" else f"{arch} / {pretrained}"
        return UserError(
            f"could not fetch or read weights for {where} ({detail}): no network? "
            "download the weights elsewhere and pass the checkpoint file"
        )
    return e


_HUB_PROBE_S = 3.0  # a TCP connect to the download host; huggingface_hub itself retries ~25 s per candidate file


def _download_source(arch: str, pretrained: str | None, kind: str) -> tuple[str, bool] | None:
    """(URL open_clip downloads the weights of (arch, pretrained) from, whether it is the Hugging Face hub), or
    None when they are already on this machine (a local file, the hub's or open_clip's download cache)."""
    import open_clip  # with huggingface_hub: heavy, loaded on first use like everywhere in this module
    from huggingface_hub import constants, try_to_load_from_cache
    from open_clip.pretrained import _get_safe_alternatives

    if kind == "schema":
        if not arch.startswith("hf-hub:"):
            return None
        repo, filenames = arch[len("hf-hub:"):].split("@")[0], ("open_clip_config.json",)
    else:
        cfg = open_clip.get_pretrained_cfg(arch, pretrained)
        hub, url = cfg.get("hf_hub", ""), cfg.get("url", "")
        if cfg.get("file") or not (hub or url):
            return None
        if not hub:  # open_clip's own URL download, cached as ~/.cache/clip/<basename>
            return None if (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file() else (url, False)
        repo, filename = os.path.split(hub)
        filename = filename or "open_clip_pytorch_model.bin"
        filenames = (*_get_safe_alternatives(filename), filename)
    try:
        if any(isinstance(try_to_load_from_cache(repo, f), str) for f in filenames):
            return None
    except ValueError:  # not a valid repo id: open_clip's own error says so
        return None
    return constants.ENDPOINT, True


def _probe(url: str) -> str | None:
    """None when ``url``'s host (or the proxy for it) accepts a TCP connection within :data:`_HUB_PROBE_S`, else why not."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = p.hostname or "", p.port or 80
    why: list[str] = ["no answer"]

    def connect() -> None:  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=_HUB_PROBE_S).close()
            why.clear()
        except OSError as e:
            why[0] = type(e).__name__

    t = threading.Thread(target=connect, daemon=True)
    t.start()
    t.join(_HUB_PROBE_S + 0.5)
    return f"{host}:{port} ({why[0]} within {_HUB_PROBE_S:g} s)" if why else None


def require_downloadable(arch: str, pretrained: str | None, kind: str) -> None:
    """Fail fast, in one line, when the weights are not on this machine and cannot be downloaded (HF_HUB_OFFLINE
    set, or the host unreachable): open_clip would only give up after a minute of retries."""
    from huggingface_hub import constants

    source = _download_source(arch, pretrained, kind)
    if source is None:
        return
    url, from_hub = source
    where = arch if kind == "schema" else f"{arch} / {pretrained}"
    local = "or download them elsewhere and pass the checkpoint file (--pretrained PATH)"
    if from_hub and constants.HF_HUB_OFFLINE:
        raise UserError(f"the weights of {where} are not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
                        f"unset it to download them, {local}")
    why = _probe(url)
    if why is not None:
        raise UserError(f"cannot reach {why} to download the weights of {where}: connect this machine to the network "
                        f"(or set {'HF_ENDPOINT' if from_hub else 'HTTPS_PROXY'} to a host it can reach), {local}")


def quick_gelu_needed(arch: str, tag: str) -> bool:
    """Whether the weights of (arch, tag) were trained with QuickGELU (all ``openai`` tags are)."""
    import open_clip

    return tag == "openai" or bool(open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", False))


def _load_hf_model(arch: str, pretrained: str | None, device, precision: str | None) -> LoadedModel:
    """``hf:/folder``: a transformers ``CLIPModel`` folder with its own tokenizer (see :mod:`ccs_dist.models.hf_clip`)."""
    if not has_no_weights(pretrained):
        raise UserError(f"{arch} names its weights itself (the folder): drop pretrained={pretrained!r}")
    folder = hf_folder(arch)
    dev = resolve_device(device)
    prec = _resolve_precision(precision, dev)
    model = load_hf_clip(folder)
    cfg = model.hf.config
    tokenizer = load_hf_tokenizer(folder, cfg.text_config.max_position_embeddings)
    tower = hf_tower(model)
    model = model.to(dev).eval()
    loaded = LoadedModel(
        model=model, preprocess=hf_preprocess(folder, cfg.vision_config.image_size), tokenizer=tokenizer, arch=arch,
        pretrained=arch, key=arch, device=dev, precision=prec, seed=None, heads=tower.heads, tower=tower,
    )
    log.info("loaded %s on %s (%s): %d layers x %d heads, width %d, embed %d",
             arch, dev, prec, loaded.num_layers, loaded.num_heads, loaded.width, loaded.embed_dim)
    return loaded


def _zoo_tower(visual: nn.Module) -> Tower | None:
    """The :class:`Tower` of an image tower open_clip does not build itself (timm trunks); None for its own ViT."""
    from open_clip.timm_model import TimmModel

    if not isinstance(visual, TimmModel):
        return None
    try:
        return timm_tower(visual)
    except TypeError as e:
        raise UserError(f"unsupported timm image tower: {e}") from e


def _get_tokenizer(arch: str) -> Callable:
    """open_clip's tokenizer for ``arch``; a one-line UserError when its files would come from an unreachable hub."""
    import open_clip

    try:
        return open_clip.get_tokenizer(arch)
    except OSError as e:
        repo = _hf_tokenizer_repo(arch)
        if repo:
            missing = f"tokenizer.json / tokenizer_config.json of the Hugging Face repo {repo}"
            fix = f"fetch them elsewhere (huggingface-cli download {repo}) and copy the cache (HF_HOME)"
        else:  # e.g. open_clip's SigLIP sentencepiece model, read from a URL
            missing = f"its vocabulary file ({str(e).strip().splitlines()[-1][:160] if str(e).strip() else type(e).__name__})"
            fix = "fetch it elsewhere into the local cache"
        raise UserError(f"the tokenizer of {arch} is not reachable: {missing} is neither downloadable (offline?) "
                        f"nor in the local cache; {fix}, or go online") from e


def _hf_tokenizer_repo(arch: str) -> str | None:
    import open_clip

    try:
        cfg = open_clip.get_model_config(arch) or {}
    except Exception:  # an hf-hub: id whose config is itself remote
        return arch.removeprefix("hf-hub:") if arch.startswith("hf-hub:") else None
    return cfg.get("text_cfg", {}).get("hf_tokenizer_name") or (arch.removeprefix("hf-hub:") if arch.startswith("hf-hub:") else None)


def check_model_names(arch: str, pretrained: str | None) -> str:
    """What ``(arch, pretrained)`` names, checked without building or fetching anything: ``hf`` (a transformers
    folder or hub id), ``schema`` (an ``hf-hub:`` id), ``none`` (random init), ``tag`` or ``file``; a one-line
    UserError for an unknown architecture or tag."""
    return "hf" if str(arch).startswith(HF_PREFIX) else _checked_names(str(arch), pretrained)[0]


def _checked_names(arch: str, pretrained: str | None) -> tuple[str, str | None]:
    """(kind, value) of an open_clip ``(arch, pretrained)`` (see :func:`_classify_pretrained`), the arch checked first."""
    _register_project_configs()
    _check_arch(arch)
    return _classify_pretrained(arch, None if pretrained is None else str(pretrained))


def load_model(
    arch: str,
    pretrained: str | None = None,
    device: str | torch.device | None = None,
    precision: str | None = None,
    seed: int = 0,
) -> LoadedModel:
    """Build an open_clip model, load its weights and install :class:`HeadAttention` in the image tower.

    Args:
        arch: open_clip architecture (``ViT-B-16``, ``ViT-B-32-quickgelu``, ``ViT-B-16-SigLIP2``, ``EVA02-B-16``,
            ``ccs-tiny``), ``hf-hub:org/repo`` (open_clip's), or ``hf:FOLDER`` / ``hf:owner/name`` (transformers CLIP).
        pretrained: a pretrained tag (``openai``, ``laion2b_s34b_b88k``), a checkpoint file, or None for
            random init. ``openai`` weights are built with QuickGELU whatever the architecture name says.
        device: ``cpu``, ``cuda[:N]`` or None (CUDA when available).
        precision: ``fp32`` or ``bf16`` (autocast, CUDA only); None = bf16 on CUDA, fp32 on CPU.
        seed: seed of the random init (ignored when weights are loaded).
    """
    import open_clip

    if str(arch).startswith(HF_PREFIX):
        return _load_hf_model(str(arch), pretrained, device, precision)
    arch = str(arch)
    pretrained = None if pretrained is None else str(pretrained)
    kind, value = _checked_names(arch, pretrained)
    dev = resolve_device(device)
    prec = _resolve_precision(precision, dev)

    kwargs: dict[str, Any] = {}
    if kind == "tag" and _bundled(arch, value) is not None:
        verify_bundled(_bundled(arch, value))
    if kind in ("tag", "schema") and _bundled(arch, value) is None:
        require_downloadable(arch, value, kind)
    if kind == "tag" and quick_gelu_needed(arch, value):
        kwargs["force_quick_gelu"] = True  # open_clip 3.x builds plain GELU for e.g. ViT-B-32 + openai
    try:
        if kind == "none":
            root_logger = logging.getLogger()
            root_logger.addFilter(_drop_open_clip_random_init)  # ours below says it once, with the seed
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, **kwargs)
            finally:
                root_logger.removeFilter(_drop_open_clip_random_init)
        else:  # require_pretrained: open_clip loads the checkpoint strictly (every parameter) or raises
            with skipped_random_init():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    arch, pretrained=value if kind != "schema" else None, require_pretrained=True, **kwargs
                )
    except UserError:
        raise
    except Exception as e:  # open_clip signals bad weights with RuntimeError, AssertionError, KeyError, OSError...
        raise _weights_error(e, kind, arch, pretrained, value) from e
    tokenizer = _get_tokenizer(arch)

    visual = model.visual
    tower = _zoo_tower(visual)
    if tower is not None:
        heads = tower.heads
    elif not hasattr(visual, "transformer") or not hasattr(visual.transformer, "resblocks"):
        raise UserError(f"{arch} has no ViT image tower (e.g. a ResNet CLIP): ccs_dist decomposes ViT towers only")
    else:
        heads = install_head_attention(visual)
    model = model.to(dev).eval()

    key = model_key(arch, value, is_file=kind == "file")
    if kind in ("none",):
        pretrained_name = None
        log.warning(
            "RANDOM INIT: %s has no pretrained weights (seed %d); results describe an untrained network", arch, seed
        )
    elif kind == "schema":
        pretrained_name = arch
    else:
        pretrained_name = value
    loaded = LoadedModel(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        arch=arch,
        pretrained=pretrained_name,
        key=key,
        device=dev,
        precision=prec,
        seed=seed if kind == "none" else None,
        heads=heads,
        tower=tower,
    )
    log.info(
        "loaded %s on %s (%s): %d layers x %d heads, width %d, embed %d",
        key, dev, prec, loaded.num_layers, loaded.num_heads, loaded.width, loaded.embed_dim,
    )
    return loaded
