"""Runbooks: the guides' steps as values, one module per phase."""

from hadeploy.runbook.lb import build_lb_runbook

__all__ = ["build_lb_runbook"]
