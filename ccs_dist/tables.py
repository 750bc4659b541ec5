"""Old path of :mod:`ccs_dist.schemas`, kept for files not yet updated."""
from ccs_dist.schemas import *  # noqa: F401,F403  MERGE-SHIM: remove at merge
from ccs_dist.schemas import csv_safe, csv_unescape, write_table  # noqa: F401  MERGE-SHIM: remove at merge
