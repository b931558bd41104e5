"""Running operations' probes: a host's in one batched round trip (`hadeploy.framing`), plus
the read-only probes an operation needs on other hosts (a tree copy reads its source).

An operation whose probe is None already knows its state locally: it is left out of the
batch and gets an empty `Probe`; a host whose operations all know makes no round trip.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from hadeploy import framing
from hadeploy.engine.lookahead import LookAhead
from hadeploy.errors import HadeployError
from hadeploy.journal import Journal
from hadeploy.ops.base import AnyOp, HostContext, Probe, SourceRead
from hadeploy.steps import Step
from hadeploy.transport.base import Transport

# What an operation's pure methods (read, done, apply...) raise when the host is not as they
# expect (a missing file to edit, undecodable content): a failure of that host, not a crash.
OP_ERRORS = (FileNotFoundError, UnicodeDecodeError, ValueError)


@contextmanager
def op_errors(host: str, op: AnyOp) -> Iterator[None]:
    """Turn `OP_ERRORS` raised by `op`'s methods into an error of `host`."""
    try:
        yield
    except OP_ERRORS as exc:
        raise HadeployError(f"{op.title()}: {exc}", host=host) from exc


def read_all(host: str, ops: Sequence[AnyOp], ctx: HostContext,
             probes: Sequence[Probe]) -> list[Any]:
    """What each operation makes of its probe (`Operation.read`), as an error of `host`."""
    seen = []
    for op, probe in zip(ops, probes, strict=True):
        with op_errors(host, op):
            seen.append(op.read(ctx, probe))
    return seen


def batch_probe(ops: Sequence[AnyOp], ctx: HostContext, token: str) -> str:
    """One script running every operation's probe (those that have one), each framed."""
    return framing.batch_script([s for s in (op.probe(ctx) for op in ops) if s is not None],
                                token)


def split_probe(stdout: str, count: int, token: str) -> list[Probe]:
    """Split the output of a batch of `count` probes back into one `Probe` each."""
    return [Probe(body, code) for body, code in framing.split_batch(stdout, count, token)]


def _looked_done(op: AnyOp, ctx: HostContext, probe: Probe) -> bool:
    """Whether a probe taken ahead can stand for `op`'s own: always, unless it was the
    `look` of a probe that waits, which stands only when it shows `op` done."""
    if not op.probe_waits():
        return True
    try:
        return bool(op.done(ctx, op.read(ctx, probe)))
    except OP_ERRORS:
        return False


class Prober:
    """Runs probes over the transport; its random token frames each batch's output."""

    def __init__(self, transport: Transport, hosts: Collection[str],
                 lookahead: LookAhead) -> None:
        self.transport = transport
        self.hosts = hosts
        self.lookahead = lookahead
        self.token = secrets.token_hex(6)
        # Source reads by (host, script): the generation they were read at, a lock the
        # first reader holds, and their stdout once read (see `source`).
        self._sources: dict[tuple[str, str], tuple[int, threading.Lock, list[str]]] = {}
        self._sources_lock = threading.Lock()

    def run_batch(self, host: str, scripts: Sequence[str | None]) -> list[Probe]:
        """The probes of `scripts` on `host`, one round trip for all (none if every script
        is None: known locally)."""
        wanted = [s for s in scripts if s is not None]
        if not wanted:
            return [Probe("") for _ in scripts]
        result = self.transport.run(host, framing.batch_script(wanted, self.token))
        if not result.ok and not framing.is_batch_output(result.stdout, self.token):
            result.check("probe (read-only checks)")
        found = iter(split_probe(result.stdout, len(wanted), self.token))
        return [Probe("") if s is None else next(found) for s in scripts]

    def probe(self, host: str, ops: Sequence[AnyOp], ctx: HostContext) -> list[Probe]:
        """Every operation's probe on `host` in one round trip, with its source probes."""
        return self._sourced(host, ops, ctx, self.run_batch(host, [op.probe(ctx) for op in ops]))

    def probe_step(self, step: Step, host: str, ctx: HostContext,
                   journal: Journal) -> list[Probe]:
        """The probes of `step` on `host`: taken ahead earlier if still valid, else run now
        with the probes of later steps taken along (see `hadeploy.engine.lookahead`)."""
        cached = self.lookahead.take(step, host)
        ops = step.ops[host]
        if cached is not None and all(_looked_done(op, ctx, probe)
                                      for op, probe in zip(ops, cached, strict=True)):
            return self._sourced(host, ops, ctx, cached)
        scripts = [op.probe(ctx) for op in ops]
        # A step known locally makes no round trip, not even one to take later probes along.
        local = all(script is None for script in scripts)
        ahead = [] if local else self.lookahead.items(step, host, journal)
        generation = self.lookahead.generation
        # Reads on other hosts, the later steps' too, go meanwhile: one batch per host.
        reads = [r for op in ops for r in op.source_probes(ctx)] + (
            self.lookahead.sources(step, host, journal) if ahead else [])
        prefetch = threading.Thread(target=self.read_sources, args=(reads, generation))
        if several := len(reads) > 1:
            prefetch.start()
        try:
            seen = self.run_batch(host, scripts + [script for _, script in ahead])
        finally:
            if several:
                prefetch.join()
        if ahead:
            self.lookahead.store(host, generation, ahead, seen[len(ops):])
        return self._sourced(host, ops, ctx, seen[:len(ops)])

    def ahead(self, step: Step, host: str, ctx: HostContext) -> list[Probe] | None:
        """The probes of `step` on `host` taken ahead, if still valid, with their source
        reads; kept for the step's own turn."""
        cached = self.lookahead.take(step, host, keep=True)
        return None if cached is None else self._sourced(host, step.ops[host], ctx, cached)

    def _sourced(self, host: str, ops: Sequence[AnyOp], ctx: HostContext,
                 probes: Sequence[Probe]) -> list[Probe]:
        """`probes` with each operation's reads on other hosts (`with_sources`): a probe
        taken ahead carries none, so that a tree copy's rides in the batch like any other."""
        return [self.with_sources(host, op, ctx, probe)
                for op, probe in zip(ops, probes, strict=True)]

    def stdout(self, host: str, script: str) -> str:
        """The stdout of one read-only probe on `host` (its exit code does not matter)."""
        return self.transport.run(host, script).stdout

    def with_sources(self, host: str, op: AnyOp, ctx: HostContext, probe: Probe) -> Probe:
        """`probe` plus the output of the operation's read-only probes on other hosts."""
        reads = op.source_probes(ctx)
        if not reads:
            return probe
        outputs = []
        for read in reads:
            if read.host not in self.hosts:
                raise HadeployError(f"{op.title()}: source host {read.host!r} is not in the "
                                    "inventory", host=host)
            outputs.append(self.source(read, f"probe of the source of {op.title()} "
                                             f"(for {host})"))
        return replace(probe, sources=tuple(outputs))

    def read_sources(self, reads: Sequence[SourceRead], generation: int) -> None:
        """Read every one of `reads` not read yet at `generation`, one batch per host, for
        `source` to hand out (a read that fails is left for `source` to run and report)."""
        by_host: dict[str, list[str]] = {}
        for read in reads:
            if read.host in self.hosts and read.script not in by_host.get(read.host, []):
                by_host.setdefault(read.host, []).append(read.script)
        for host, scripts in by_host.items():
            with self._sources_lock:
                if generation != self.lookahead.generation:
                    return
                todo = [s for s in scripts if (entry := self._sources.get((host, s))) is None
                        or entry[0] != generation]
                entries = [(generation, threading.Lock(), list[str]()) for _ in todo]
                for script, entry in zip(todo, entries, strict=True):
                    entry[1].acquire()  # a host asking for one waits until the batch is in
                    self._sources[(host, script)] = entry
            try:
                if len(todo) > 1:
                    for probe, entry in zip(self.run_batch(host, todo), entries, strict=True):
                        if probe.exited == 0:
                            entry[2].append(probe.stdout)
            except HadeployError:
                pass  # each read runs again on its own in `source`, which says what failed
            finally:
                for entry in entries:
                    entry[1].release()

    def source(self, read: SourceRead, what: str) -> str:
        """The stdout of `read` on its host, read once for every host that asks while no
        command runs anywhere: the new controllers' copies of one tree compare with one
        manifest of the original, not one each (a no-op re-run of the whole plane read
        each of ten trees twice). A command run since makes the next ask read again."""
        generation = self.lookahead.generation
        with self._sources_lock:
            entry = self._sources.get((read.host, read.script))
            if entry is None or entry[0] != generation:
                entry = (generation, threading.Lock(), [])
                self._sources[(read.host, read.script)] = entry
        _, lock, stdout = entry
        with lock:  # a second host asking meanwhile waits for the first one's read
            if not stdout:
                result = self.transport.run(read.host, read.script)
                result.check(what)
                stdout.append(result.stdout)
        return stdout[0]
