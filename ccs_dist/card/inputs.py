"""The arrays the card's scores read (:class:`ccs_dist.card.run.CardInputs`), from a decomposition, its
image set, the audited model's text tower and the reference encoder. The only model work of the card: the
reference encoder's pass over the held-out images and both text towers on the labels' prompts."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ccs_dist.card.activations import normalised_terms, split_images
from ccs_dist.card.config import CardConfig
from ccs_dist.card.reference import embed_image_set, label_similarities
from ccs_dist.card.run import CardInputs
from ccs_dist.core.errors import UserError
from ccs_dist.data.images import ImageSet
from ccs_dist.decomposition.image_set import DecompositionArtifact
from ccs_dist.models.loading import LoadedModel
from ccs_dist.text.embed import embed_texts


def card_inputs(audited: LoadedModel, reference: LoadedModel, artifact: DecompositionArtifact, images: ImageSet,
                labels: Sequence[str], config: CardConfig) -> CardInputs:
    t0 = time.perf_counter()
    terms = normalised_terms(artifact)
    split = split_images(terms.shape[0], config.heldout_share, config.seed)
    where = {images.image_id(i): i for i in range(len(images))}
    ids = artifact.ids()
    missing = [ids[n] for n in split.heldout_N if ids[n] not in where]
    if missing:
        raise UserError(f"the probe image set lacks {len(missing)} decomposed images (e.g. {missing[0]}): decompose it again")
    labels = sorted(set(labels))
    ref_NE = embed_image_set(reference, images, [where[ids[n]] for n in split.heldout_N], config.batch_size)
    prompts = [config.prompt.replace("{label}", label) for label in labels]
    return CardInputs(model=audited.key, layers=artifact.layers, terms_NLHE=terms, split=split, labels=labels,
                      label_TE=embed_texts(audited, prompts).astype("float64"), ref_NE=ref_NE,
                      sim_NT=label_similarities(reference, ref_NE, labels, config),
                      facts={"images": int(len(split.heldout_N)), "fit_images": int(len(split.fit_N)),
                             "labels": len(labels), "seconds_inputs": round(time.perf_counter() - t0, 3)})
