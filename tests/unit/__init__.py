"""Unit tests of hadeploy's pure core: fast, no root, no network (`python -m pytest tests/unit`)."""
