"""The engine: executes runbooks, journals every change before it is made, resumes, and
rolls back newest-first. It never imports rich or invoke: it reports through events.

`Engine` (coordinator.py) only wires the parts and decides, step by step, whether the run
goes on: a step whose hosts all succeeded lets the next one start; an interruption stops the
run resumable; a failure raises `StepFailed` holding every host's `HostOutcome`. The parts,
each with one job:

    group.py       on_hosts: run a function on many hosts in threads, results by host
    contexts.py    HostContexts: facts, platform profiles and the HostContext of each host
    probing.py     Prober: a host's probes in one batched round trip, plus source probes;
                   Operation.read turns a probe into what the operation decides from
    lookahead.py   LookAhead: later steps' probes taken along, valid until a command runs
    commands.py    CommandRunner: one command (stop request, stdin from another host, event)
    executor.py    StepExecutor: a step on its hosts (serial order too) -> HostOutcome each
    planner.py     Planner, PlanItem: what a run would do, from read-only probes
    rollback.py    Undoer: undo from journal records alone, with deferred commands
    failures.py    the host-failed event's fields; outcomes -> the error they end in
    hoststate.py   HostState: the run's lock (owner, heartbeat) and each host's own record
                   of the run on the hosts, so another workstation can resume or undo it

Journal writes from parallel hosts are group-committed by `hadeploy.journal.JournalWriter`;
events leave through `hadeploy.events.Emitter`. Both mask secrets on the way out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hadeploy.engine.coordinator import Engine
    from hadeploy.engine.planner import PlanItem

__all__ = ["Engine", "PlanItem"]


def __getattr__(name: str) -> Any:
    """`Engine` and `PlanItem` load when first asked for: the first round trip's script
    (`hoststate`) is built, and sent, before the rest of the engine has loaded."""
    if name == "Engine":
        from hadeploy.engine.coordinator import Engine

        return Engine
    if name == "PlanItem":
        from hadeploy.engine.planner import PlanItem

        return PlanItem
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
