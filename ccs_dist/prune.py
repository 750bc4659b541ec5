"""Old path of :mod:`ccs_dist.head_sets`, kept for files not yet updated."""
from ccs_dist.head_sets import *  # noqa: F401,F403  MERGE-SHIM: remove at merge
from ccs_dist.head_sets import HeadSetConfig, build_head_sets, load_concept_map, parse_explicit  # noqa: F401  MERGE-SHIM: remove at merge
