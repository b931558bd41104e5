"""Operations: desired states on a host, as values the engine can check, apply and undo."""

from hadeploy.ops.base import (
    AnyOp,
    Command,
    Fact,
    HostContext,
    Operation,
    Probe,
    Record,
    SourceRead,
    Undo,
)
from hadeploy.ops.checks import Requirement
from hadeploy.ops.drain import Balancers, DrainedRestart
from hadeploy.ops.endpoints import EndpointsOnVip
from hadeploy.ops.files import FileContent, FileEdit
from hadeploy.ops.packages import PackagesInstalled
from hadeploy.ops.services import ServiceRunning
from hadeploy.ops.shared_state import SharedState, shared_state_check
from hadeploy.ops.sysctl import SysctlValue
from hadeploy.ops.trees import TreeCopied
from hadeploy.ops.undo import UNDO

__all__ = [
    "UNDO",
    "AnyOp",
    "Balancers",
    "Command",
    "DrainedRestart",
    "EndpointsOnVip",
    "Fact",
    "FileContent",
    "FileEdit",
    "HostContext",
    "Operation",
    "PackagesInstalled",
    "Probe",
    "Record",
    "Requirement",
    "ServiceRunning",
    "SharedState",
    "SourceRead",
    "SysctlValue",
    "TreeCopied",
    "Undo",
    "shared_state_check",
]
