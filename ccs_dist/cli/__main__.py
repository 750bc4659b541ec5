"""``python -m ccs_dist.cli``: the ``ccs-dist`` command."""

import sys

from ccs_dist.cli import main

sys.exit(main())
