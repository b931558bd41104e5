"""`python -m hadeploy TASK ...`: the same program as the `hadeploy` console script."""

from __future__ import annotations

import sys

from hadeploy.cli import main

if __name__ == "__main__":
    sys.exit(main())
