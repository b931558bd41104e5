"""The `hadeploy` console script: invoke's Program over the same task collection."""

from __future__ import annotations

from invoke.program import Program

from hadeploy import __version__
from hadeploy.tasks import ns

program = Program(namespace=ns, version=__version__, name="hadeploy", binary="hadeploy")


def main() -> int:
    """Run `hadeploy TASK ...` (exits with the task's code)."""
    program.run()
    return 0
