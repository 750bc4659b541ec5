"""Old path of :mod:`ccs_dist.data.synthetic`, kept for files not yet updated."""
from ccs_dist.data.synthetic import *  # noqa: F401,F403  MERGE-SHIM: remove at merge
from ccs_dist.data.synthetic import write_all  # noqa: F401  MERGE-SHIM: remove at merge

if __name__ == "__main__":  # MERGE-SHIM: `python -m ccs_dist.evaluate.synthetic` still works
    import runpy

    runpy.run_module("ccs_dist.data.synthetic", run_name="__main__")
