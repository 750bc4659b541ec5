"""Small timm trunks for tests and demos: the real SigLIP / EVA-02 CLIP trunk recipes at 32 px, width 64, 3 layers.

Registered in timm's model registry (once per process) so open_clip configs (``ccs-tiny-attnpool`` (SigLIP recipe; open_clip picks a SigLIP tokenizer for any name with "siglip"),
``ccs-tiny-eva02`` in ``models/configs``) can name them as ``timm_model_name``; open_clip's ``TimmModel``
builds them as it builds ``ViT-B-16-SigLIP2`` / ``EVA02-B-16``. The SigLIP one adds a layer scale (the real one
has none) so the layer-scale path is exercised.
"""

from __future__ import annotations

TINY = dict(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=4)


def ccs_tiny_siglip(pretrained: bool = False, **kwargs):
    from timm.models.vision_transformer import vit_base_patch16_siglip_224

    return vit_base_patch16_siglip_224(pretrained=False, **{**TINY, "init_values": 0.5, **kwargs})


def ccs_tiny_eva02(pretrained: bool = False, **kwargs):
    from timm.models.eva import eva02_base_patch16_clip_224

    return eva02_base_patch16_clip_224(pretrained=False, **{**TINY, "ref_feat_shape": (4, 4), **kwargs})


def register_tiny_timm() -> None:
    import timm
    from timm.models import register_model

    for fn in (ccs_tiny_siglip, ccs_tiny_eva02):
        if not timm.is_model(fn.__name__):
            register_model(fn)
