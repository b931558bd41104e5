"""invoke's entry point: `invoke --list` shows hadeploy's tasks (see hadeploy/tasks.py)."""

from hadeploy.tasks import ns

__all__ = ["ns"]
