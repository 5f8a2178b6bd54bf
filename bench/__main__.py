"""``python -m bench <scenario> [options]``; ``python -m bench --list`` lists the scenarios."""

import sys

from bench.cli import main

sys.exit(main())
