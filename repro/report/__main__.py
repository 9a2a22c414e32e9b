"""``python -m repro.report``: the same as the ``repro-report`` console script."""

import sys

from repro.report.cli import main

sys.exit(main())
