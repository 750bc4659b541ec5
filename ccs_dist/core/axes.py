"""The one axis legend: what each capital letter means in a shape-suffixed name (``heads_BLHE``, ``keep_BH``).

A name ends with one capital per axis, in order: ``text_TE`` is [texts, joint embedding]. A ``1`` marks a
kept singleton axis (``keep_BH11``). Each letter has one meaning across the package:

====  =====================================================================================
A     chosen heads of one layer (those whose CLS write is split over positions)
B     batch: the images (or samples) of one forward pass
C     classes of a classification task
D     model width (the image tower's residual stream)
E     joint image-text embedding
F     factors of the toy world
O     concepts: family tags of the description pool, the offline labeler's vocabulary
G     heads flattened over layers, layer-major (index ``layer * H + head``)
H     heads of one layer
I     sampled images (the subset that gets exact ablation effects and deletion curves)
J     points of a deletion curve (k = 0, 1, ..., deletions)
K     head dimension (per-head query / key / value width)
L     layers
M     frames of a video
N     images of a whole set (probe set, dataset), as opposed to one batch
P     token positions (image patches with CLS first, or text tokens)
Q     queries (bias retrieval)
R     rank (TextSpan's chosen directions)
S     head sets (pruning conditions evaluated together)
T     texts (descriptions, captions, prompts)
U     distinct head sets (S after deduplication)
V     videos
W     pixels per side of a (square) image: ``images_B3WW``
X     directions of a head's numerical basis (TextSpan's coordinates of a head's span)
Y     groups of a protected attribute (bias metrics)
Z     several axes folded into one batch (e.g. curve points x images)
====  =====================================================================================
"""

LEGEND = {
    "A": "chosen heads of one layer", "B": "batch", "C": "classes", "D": "model width", "E": "joint embedding",
    "F": "toy factors", "O": "concepts", "G": "heads flattened over layers (layer-major)", "H": "heads of one layer",
    "I": "sampled images", "J": "deletion-curve points", "K": "head dimension", "L": "layers", "M": "video frames",
    "N": "images of a whole set", "P": "token positions", "Q": "queries", "R": "rank", "S": "head sets",
    "T": "texts", "U": "distinct head sets", "V": "videos", "W": "pixels per side", "X": "basis directions",
    "Y": "attribute groups", "Z": "folded samples",
}
