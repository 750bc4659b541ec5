"""``python -m ccs_dist.jobs.full_grid``: the whole study as one job (the command lives in
:mod:`ccs_dist.cli.full_grid`; this module is only its entry point, the README's main command)."""

import sys

if __name__ == "__main__":
    from ccs_dist.cli.full_grid import main

    sys.exit(main())
