"""Look-ahead probes: the probes of a host's later steps, taken along with an earlier step's.

A round trip costs far more than a few more read-only probes, so when the transport says so
(`probe_ahead`), the probe of a step also runs the probes of the host's later steps. A later
step uses them instead of its own round trip only if no command has run on any host since
(a no-op re-run: one probe round trip per host in all); otherwise it probes again. Once a
command has run, nobody probes ahead any more, so a run executes each probe at most twice.
Steps whose probes wait for something are left out, unless the operation has a `look` that
does not wait: that look is used only if it shows the operation done (a no-op's verify
steps), else the step probes in its turn. A probe that also reads another host (a tree
copy's source manifest) rides too; its reads on the other host are listed by `sources`, so
that the prober takes them there in one batch as well.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

from hadeploy.journal import DONE_STATES, Journal
from hadeploy.ops.base import HostContext, Probe, SourceRead
from hadeploy.steps import Step

# Probe text taken along per round trip: well below the kernel's limit for one argument
# (MAX_ARG_STRLEN, 128 KiB: sshd hands the whole command to the login shell as one), with
# the step's own probes and the quoting (tests/unit/test_noop_round_trips.py checks the
# whole plane's largest batch); a whole plane's controller takes ~40 KB.
AHEAD_BYTES = 64_000

AheadProbe = tuple[str, str | None]  # step id, probe script (None: known locally)
ContextFor = Callable[[str, str, Journal], HostContext]


class LookAhead:
    """Chooses the probes to take along and keeps those taken, stamped with a generation
    that every command run anywhere moves on (which invalidates them)."""

    def __init__(self, enabled: bool, context: ContextFor) -> None:
        self.enabled = enabled
        self.context = context
        self.steps: tuple[Step, ...] = ()
        self._lock = threading.Lock()
        self._generation = 0
        self._run_start = 0
        self._later: dict[str, tuple[int, dict[str, list[Probe]]]] = {}

    def start_run(self, steps: tuple[Step, ...]) -> None:
        """A run of `steps` begins: later steps are looked up among them, and nothing read
        before (the plan, which the operator may have read for minutes) counts as fresh."""
        self.steps = steps
        with self._lock:
            self._generation += 1
            self._run_start = self._generation

    def command_ran(self) -> None:
        """A command may have changed what any probe taken earlier saw."""
        with self._lock:
            self._generation += 1

    @property
    def generation(self) -> int:
        """The count of commands run so far (probes taken now are stamped with it)."""
        with self._lock:
            return self._generation

    def items(self, step: Step, host: str, journal: Journal) -> list[AheadProbe]:
        """The probes to take along with `step`'s on `host` (none once this run changed
        something: later steps will likely change too, and probing ahead again at every
        step would run each probe over and over)."""
        index = self._ahead_from(step)
        if index is None:
            return []
        items: list[AheadProbe] = []
        size = 0
        for later, ctx in self._later_steps(index, host, journal):
            ops = later.ops[host]
            if any(op.probe_waits() and op.look(ctx) is None for op in ops):
                continue
            scripts = [op.look(ctx) if op.probe_waits() else op.probe(ctx) for op in ops]
            size += sum(len(script or "") for script in scripts)
            if size > AHEAD_BYTES:
                break
            items += [(later.id, script) for script in scripts]
        return items

    def sources(self, step: Step, host: str, journal: Journal) -> list[SourceRead]:
        """The reads on other hosts of `host`'s later steps, while they may be taken ahead
        (see `items`): a no-op reads the original's trees in one round trip, not one each."""
        index = self._ahead_from(step)
        if index is None:
            return []
        return [read for later, ctx in self._later_steps(index, host, journal)
                for op in later.ops[host] for read in op.source_probes(ctx)]

    def _ahead_from(self, step: Step) -> int | None:
        """The index of `step` in the run, if probes may be taken ahead from it: enabled,
        and nothing changed yet in this run."""
        index = next((i for i, s in enumerate(self.steps) if s is step), None)
        if not self.enabled or index is None:
            return None
        with self._lock:
            return index if self._generation == self._run_start else None

    def _later_steps(self, index: int, host: str,
                     journal: Journal) -> Iterator[tuple[Step, HostContext]]:
        """The steps after the `index`-th that `host` has yet to do, with its context."""
        for later in self.steps[index + 1:]:
            entry = journal.step(later.id).hosts.get(host)
            if host in later.ops and entry is not None and entry.state not in DONE_STATES:
                yield later, self.context(later.id, host, journal)

    def store(self, host: str, generation: int, items: Sequence[AheadProbe],
              probes: Sequence[Probe]) -> None:
        """Keep `probes` (one per item) of `host`, taken at `generation`."""
        later: dict[str, list[Probe]] = {}
        for (step_id, _), probe in zip(items, probes, strict=True):
            later.setdefault(step_id, []).append(probe)
        with self._lock:
            self._later[host] = (generation, later)

    def keep(self, host: str, generation: int, step_id: str, probes: Sequence[Probe]) -> None:
        """Keep `step_id`'s own `probes` of `host`, taken at `generation`, beside the later
        steps' (a step probed before its turn, to order a serial step, needs no second one)."""
        with self._lock:
            taken, later = self._later.get(host, (generation, {}))
            later = dict(later) if taken == generation else {}
            later[step_id] = list(probes)
            self._later[host] = (generation, later)

    def take(self, step: Step, host: str, keep: bool = False) -> list[Probe] | None:
        """The probes of `step` on `host` taken ahead, if still valid (removed unless `keep`)."""
        with self._lock:
            generation, later = self._later.get(host, (-1, {}))
            if generation != self._generation or step.id not in later:
                return None
            return later[step.id] if keep else later.pop(step.id)
