"""`python -m hadeploy TASK ...`: the same program as the `hadeploy` console script."""

from __future__ import annotations

from hadeploy.cli import console

if __name__ == "__main__":
    console()
