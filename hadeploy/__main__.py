"""`python -m hadeploy ...`: the same tasks as `invoke`/`hadeploy`; `render` prints files."""

from __future__ import annotations

import sys


def run() -> int:
    """Dispatch `render` to the renderer CLI, everything else to the task program."""
    if len(sys.argv) > 1 and sys.argv[1] == "render":
        from hadeploy.render_cli import main

        return main(sys.argv[2:])
    from hadeploy.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(run())
