"""A head's activations on held-out probe images, from its decomposition (no second pass of the audited model).

The probe images are split (seeded) into a fit part and a held-out part. A head's term of image ``n`` is its
direct contribution divided by the norm of the image's embedding (as TextSpan and the card's thumbnails
normalise it, :mod:`ccs_dist.spans.head_images`). Two activations per held-out image:

* ``pc1``: the projection of the centred term on the first principal direction of the *fit* images' terms,
  oriented (as the thumbnails are) so that the fit image of largest ``|projection|`` lies on the ``+`` side;
* ``label``: the term's projection on the unit text embedding of the head's label (the audited model's text
  tower): how much the head writes the label's own direction.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ccs_dist.core.errors import UserError
from ccs_dist.decomposition.image_set import DecompositionArtifact


@dataclass(frozen=True)
class Split:
    fit_N: np.ndarray  # indices of the fit images
    heldout_N: np.ndarray  # indices of the held-out images


def split_images(n_images: int, heldout_share: float, seed: int) -> Split:
    order = np.random.default_rng(seed).permutation(n_images)
    n_held = int(round(n_images * heldout_share))
    if n_held < 4 or n_images - n_held < 2:
        raise UserError(f"the card needs at least 4 held-out and 2 fit probe images, got {n_images} images: use more probe images")
    return Split(np.sort(order[n_held:]), np.sort(order[:n_held]))


def normalised_terms(artifact: DecompositionArtifact) -> np.ndarray:
    """[N, L, H, E] float32 head terms over the images' embedding norms (per-image heads must have been kept)."""
    if artifact.keep == "moments":
        raise UserError(f"{artifact.path} keeps only moments: the card needs each image's heads (probe keep: heads)")
    parts = []
    for name in artifact.shard_names:
        shard = artifact.load_shard(name)
        norm = np.linalg.norm(np.asarray(shard["embedding"], np.float64), axis=-1)
        parts.append((np.asarray(shard["heads"], np.float64) / norm[:, None, None, None]).astype(np.float32))
    return np.concatenate(parts, axis=0)


def first_direction(x_NE: np.ndarray, fit_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit first principal direction [E], mean [E]) of the fit rows, oriented as the module doc says."""
    fit = x_NE[fit_N].astype(np.float64)
    mean_E = fit.mean(0)
    _, _, vt = np.linalg.svd(fit - mean_E, full_matrices=False)
    u_E = vt[0]
    p = (fit - mean_E) @ u_E
    return (u_E if p.max() >= -p.min() else -u_E), mean_E


def head_activations(x_NE: np.ndarray, split: Split, label_E: np.ndarray) -> dict[str, np.ndarray]:
    """``{pc1, label}``: [N_heldout] activations of the held-out images (module doc)."""
    u_E, mean_E = first_direction(x_NE, split.fit_N)
    held = x_NE[split.heldout_N].astype(np.float64)
    return {"pc1": (held - mean_E) @ u_E, "label": held @ (label_E / np.linalg.norm(label_E))}
