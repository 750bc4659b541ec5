"""Old path of :mod:`ccs_dist.data.images`, kept for files not yet updated."""
from ccs_dist.data.images import *  # noqa: F401,F403  MERGE-SHIM: remove at merge
from ccs_dist.data.images import GENERATED_SETS, resolve_image_set  # noqa: F401  MERGE-SHIM: remove at merge
