"""hadeploy: turn a single OpenStack controller into a highly available control plane over SSH.

The flow: inventory (validated) + catalog -> runbook of steps -> engine -> transport -> hosts,
with a journal of checkpoints so a failed run resumes or rolls back. See README.md.
"""

__version__ = "0.1.0"
