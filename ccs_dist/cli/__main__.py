"""``python -m ccs_dist.cli``: the ``ccs-dist`` command."""

import sys

if __name__ == "__main__":
    from ccs_dist.cli import main

    sys.exit(main())
