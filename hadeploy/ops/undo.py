"""How to undo each kind of change from its journal record alone, in one explicit table.

Rollback works from the journal, not from the runbook, so it still works after the
inventory or hadeploy itself changed; every `kind` an operation's `intent` journals has its
undo function here, whichever modules happen to be imported.
"""

from __future__ import annotations

from collections.abc import Mapping

from hadeploy.ops.base import Undo
from hadeploy.ops.drain import undo_drained
from hadeploy.ops.endpoints import undo_endpoints
from hadeploy.ops.files import undo_file
from hadeploy.ops.packages import undo_packages
from hadeploy.ops.retire import undo_retired
from hadeploy.ops.services import undo_service
from hadeploy.ops.sysctl import undo_sysctl
from hadeploy.ops.trees import undo_tree

# Typed read-only: nothing registers into it at import time (tests may patch in kinds of
# their own test operations for the length of a test).
UNDO: Mapping[str, Undo] = {
    "drained-service": undo_drained,
    "endpoints": undo_endpoints,
    "file": undo_file,
    "packages": undo_packages,
    "retired-service": undo_retired,
    "service": undo_service,
    "sysctl": undo_sysctl,
    "tree": undo_tree,
}
