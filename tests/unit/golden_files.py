"""Golden files under tests/data/golden: compare, or rewrite with HADEPLOY_REGEN_GOLDEN=1.

    HADEPLOY_REGEN_GOLDEN=1 python -m pytest tests/unit -q   # rewrite, then review `git diff`
"""

from __future__ import annotations

import os
import warnings

from tests.unit.examples import DATA

GOLDEN = DATA / "golden"
REGEN = os.environ.get("HADEPLOY_REGEN_GOLDEN") == "1"


def assert_golden(name: str, text: str) -> None:
    """`text` must equal the golden file `name` byte for byte."""
    path = GOLDEN / name
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
        warnings.warn(f"HADEPLOY_REGEN_GOLDEN=1: rewrote {path}; review it with git diff",
                      stacklevel=2)
        return
    assert path.exists(), (
        f"golden file {path} is missing; create it with HADEPLOY_REGEN_GOLDEN=1 python -m "
        "pytest tests/unit and review it"
    )
    expected = path.read_bytes().decode("utf-8")
    assert text == expected, (
        f"rendered text differs from {path}; if the change is intended, rerun with "
        "HADEPLOY_REGEN_GOLDEN=1 and review the diff"
    )
