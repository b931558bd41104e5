"""Operations: desired states on a host, as values the engine can check, apply and undo."""

from hadeploy.ops.base import UNDO, Command, HostContext, Operation, Probe, Record, SourceRead
from hadeploy.ops.checks import Requirement
from hadeploy.ops.files import FileContent, FileEdit
from hadeploy.ops.packages import PackagesInstalled
from hadeploy.ops.services import ServiceRunning
from hadeploy.ops.sysctl import SysctlValue
from hadeploy.ops.trees import TreeCopied

__all__ = [
    "UNDO",
    "Command",
    "FileContent",
    "FileEdit",
    "HostContext",
    "Operation",
    "PackagesInstalled",
    "Probe",
    "Record",
    "Requirement",
    "ServiceRunning",
    "SourceRead",
    "SysctlValue",
    "TreeCopied",
]
