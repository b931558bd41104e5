"""The planner: what a run would do, from read-only probes (or none offline); changes nothing.

The plan is what the console shows the operator, so its texts (previews, errors) leave here
with secrets masked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from hadeploy.engine.contexts import HostContexts
from hadeploy.engine.group import on_hosts
from hadeploy.engine.probing import OP_ERRORS, Prober
from hadeploy.errors import HadeployError
from hadeploy.ops.base import AnyOp, Command, Probe
from hadeploy.steps import Runbook, Step


@dataclass
class PlanItem:
    """What a plan shows for one host in one step: operations pending (with their commands
    and preview) and done, or why the host could not be probed."""

    step: Step
    host: str
    pending: list[tuple[AnyOp, list[Command], str]] = field(default_factory=list)
    done: list[AnyOp] = field(default_factory=list)
    error: str | None = None


class Planner:
    """Plans runbooks host by host, hosts of a step in parallel."""

    def __init__(self, prober: Prober, contexts: HostContexts, redact: Callable[[str], str],
                 limit: int) -> None:
        self.prober = prober
        self.contexts = contexts
        self.redact = redact
        self.limit = limit

    def plan(self, runbook: Runbook, offline: bool = False) -> list[PlanItem]:
        """One item per step and host; offline, every operation shows as pending."""
        items: list[PlanItem] = []
        # Steps that would change a host count as changed for later steps (restart_after).
        would_change: dict[str, set[str]] = {h: set() for h in runbook.hosts}
        for step in runbook.steps:

            def plan_host(host: str, step: Step = step) -> PlanItem:
                return self._plan_host(step, host, frozenset(would_change[host]), offline)

            # Offline there is nothing to wait for: threads would only add start-up cost.
            planned = on_hosts(step.hosts, plan_host, 1 if offline else self.limit)
            for host, item in planned.items():
                if item.pending:
                    would_change[host].add(step.id)
            items += planned.values()
        return items

    def _plan_host(self, step: Step, host: str, changed: frozenset[str],
                   offline: bool) -> PlanItem:
        item = PlanItem(step, host)
        ops = step.ops[host]
        ctx = replace(self.contexts.context(step.id, host, None, detail=True),
                      changed_steps=changed)
        # A probe that polls until the earlier steps' work shows (APIs answering once
        # started) cannot be judged before those steps ran: probing it would only wait out
        # its bound. It is shown as checked at run time.
        later = {id(op) for op in ops if changed and op.probe_waits()}
        try:
            probed = [op for op in ops if id(op) not in later]
            probes = iter([Probe("") for _ in probed] if offline or not probed
                          else self.prober.probe(host, probed, ctx))
            for op in ops:
                if id(op) in later:
                    item.pending.append((op, [], f"  checked when the run gets here, after "
                                                 f"the changes above: {op.title()}\n"))
                    continue
                probe = next(probes)
                try:
                    seen = op.read(ctx, probe)
                    if not offline and op.done(ctx, seen):
                        item.done.append(op)
                        continue
                    commands = op.apply(ctx, seen)
                    preview = op.preview(ctx, seen)
                except OP_ERRORS as exc:
                    commands, preview = [], f"  (decided on the host at run time: {exc})\n"
                item.pending.append((op, commands, self.redact(preview)))
        except HadeployError as exc:
            item.error = self.redact(str(exc))
        return item
