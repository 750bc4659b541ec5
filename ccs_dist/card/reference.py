"""The reference encoder (the card's offline judge) and what it says about images and labels.

The judge's *evidence* that image ``n`` shows label ``L`` is ``cos(r_n, t_L) - max_M cos(r_n, t_M)``, with
``r_n`` the reference image embedding, ``t_L`` that of the prompt of ``L`` (``card.prompt``) and ``M`` ranging
over the prompts of the other heads' labels and the null prompt (``card.null_prompt``): the image shows ``L``
when ``L`` beats every alternative (evidence > 0). Labels equal to ``L`` (other heads with the same label) are
no alternative.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ccs_dist.card.config import CardConfig
from ccs_dist.core.errors import UserError
from ccs_dist.data.images import ImageSet
from ccs_dist.evaluate.encode import embed_images
from ccs_dist.models.loading import LoadedModel, load_model
from ccs_dist.text.embed import embed_texts

log = logging.getLogger(__name__)
NO_REFERENCE = "card.reference.arch is required when the card is enabled: name an open_clip model other than the audited one"


def load_reference(config: CardConfig, audited: LoadedModel) -> tuple[LoadedModel, bool]:
    """(the reference model, whether it is the audited model): the same model is an error unless allowed."""
    ref = config.reference
    if not ref.arch:
        raise UserError(NO_REFERENCE)
    reference = load_model(ref.arch, ref.pretrained, device=audited.device)
    same = reference.key == audited.key or reference.weights_hash == audited.weights_hash
    if same and not ref.allow_self:
        raise UserError(f"card.reference is the audited model {audited.key}: name another open_clip model "
                        "(or set card.reference.allow_self: true, flagged in every output)")
    if same:
        log.warning("SELF-REFERENCE: the card of %s is judged by the audited model itself", audited.key)
    return reference, same


def embed_image_set(reference: LoadedModel, images: ImageSet, indices: Sequence[int], batch_size: int) -> np.ndarray:
    """[N, E] unit reference embeddings of ``images[indices]`` (in that order)."""
    out = []
    for lo in range(0, len(indices), batch_size):
        batch = torch.stack([reference.preprocess(images.load(int(i)).convert("RGB")) for i in indices[lo : lo + batch_size]])
        out.append(embed_images(reference, batch, [()])[0].cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, reference.embed_dim))


def label_similarities(reference: LoadedModel, image_NE: np.ndarray, labels: Sequence[str], config: CardConfig) -> np.ndarray:
    """[N, T+1] cosine of each image to each label's prompt, the null prompt last."""
    prompts = [config.prompt.replace("{label}", label) for label in labels] + [config.null_prompt]
    return image_NE @ embed_texts(reference, prompts).astype(np.float64).T


def evidence(sim_NT: np.ndarray, labels: Sequence[str], label: str) -> np.ndarray:
    """[N] the judge's evidence that each image shows ``label`` (module doc); ``sim_NT`` from :func:`label_similarities`."""
    own = labels.index(label)
    alternatives = [t for t, other in enumerate(labels) if other != label] + [len(labels)]
    return sim_NT[:, own] - sim_NT[:, alternatives].max(1)
