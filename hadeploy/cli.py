"""The `hadeploy` console script and `python -m hadeploy`: invoke's Program over the tasks of
hadeploy/tasks.py, the same collection the repository's `invoke` runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from invoke.exceptions import Exit, ParseError
from invoke.program import Program

from hadeploy import __version__
from hadeploy.tasks import ns


@contextmanager
def usage_errors(binary: str) -> Iterator[None]:
    """A command line invoke cannot parse exits 2, as every refusal that touched no host."""
    try:
        yield
    except ParseError as exc:
        context = exc.context.name if exc.context is not None else None
        usage = (f"usage: {binary} {context} [--options]; `{binary} --help {context}` lists "
                 "them" if context else f"usage: {binary} TASK [--options]; `{binary} --list` "
                 "lists the tasks")
        raise Exit(f"error: {exc}\n{usage}", code=2) from None


class HadeployProgram(Program):
    """invoke's Program, with usage errors exiting 2 (invoke's own says 1)."""

    def parse_core(self, argv: list[str] | None) -> None:
        """Parse the core flags and the task names."""
        with usage_errors(self.binary):
            super().parse_core(argv)

    def parse_tasks(self) -> None:
        """Parse each task's arguments."""
        with usage_errors(self.binary):
            super().parse_tasks()

    def parse_cleanup(self) -> None:
        """Act on --help TASK, --list and the like."""
        with usage_errors(self.binary):
            super().parse_cleanup()


program = HadeployProgram(namespace=ns, version=__version__, name="hadeploy",
                          binary="hadeploy")


def main() -> int:
    """Run `hadeploy TASK ...` (exits with the task's code, see hadeploy.tasks)."""
    program.run()
    return 0
