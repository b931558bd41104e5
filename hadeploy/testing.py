"""Public test doubles (like invoke.MockContext / fabric.testing): a scripted transport.

`FakeTransport` answers commands from handlers instead of SSH, so the engine, runbooks and
tasks can be tested without sockets; anything no handler answers fails loudly. The engine
runs every probe of a step in one batch script: `batch_probes` takes such a script apart
and `batch_answer` frames per-probe answers back, and `FakeTransport.on_probe` does both
so a handler only ever sees one probe at a time. `FakeHost` is a tiny simulated host (a
dict of files and a five-word shell vocabulary) for tests of engine logic, not of shell.
"""

from __future__ import annotations

import shlex
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hadeploy import framing
from hadeploy.errors import TransportError
from hadeploy.transport.base import Result

Handler = Callable[[str, str, bytes | None], tuple[int, str, str] | None]
ProbeHandler = Callable[[str, str], tuple[int, str] | None]


def batch_probes(script: str) -> tuple[str, list[str]] | None:
    """The token and the probes of a batch probe script, or None for other scripts."""
    return framing.parse_batch_script(script)


def batch_answer(token: str, answers: Sequence[tuple[int, str]]) -> str:
    """The stdout of a batch probe whose probes printed and exited as in `answers`."""
    return framing.batch_answer(token, answers)


@dataclass
class FakeTransport:
    """Routes each command to the first handler that answers; records every call.

    `probe_ahead` is off by default, so each step probes on its own and tests see the plain
    probe, apply, verify order; turn it on to test the engine's look-ahead.
    """

    handlers: list[Handler] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)
    closed: bool = False
    probe_ahead: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, handler: Handler, first: bool = False) -> None:
        """Add a handler: (host, script, stdin) -> (exit, stdout, stderr) or None to pass.

        `first` puts it before the others: handy for observers that always pass.
        """
        if first:
            self.handlers.insert(0, handler)
        else:
            self.handlers.append(handler)

    def on_probe(self, answer: ProbeHandler) -> None:
        """Answer batch probes one probe at a time: (host, probe) -> (exit, stdout) or None."""

        def handler(host: str, script: str, stdin: bytes | None) -> tuple[int, str, str] | None:
            batch = batch_probes(script)
            if batch is None:
                return None
            token, probes = batch
            answers = [answer(host, probe) for probe in probes]
            if any(a is None for a in answers):
                return None
            return 0, batch_answer(token, [a for a in answers if a is not None]), ""

        self.on(handler)

    def run(self, host: str, script: str, stdin: bytes | None = None,
            timeout: float | None = None) -> Result:
        with self._lock:
            self.calls.append((host, script))
        if host in self.down:
            raise TransportError(host, "connection lost (simulated)")
        for handler in list(self.handlers):
            answer = handler(host, script, stdin)
            if answer is not None:
                code, out, err = answer
                return Result(host, script, code, out, err)
        raise AssertionError(f"FakeTransport: no handler for {host}: {script[:200]}")

    def read(self, host: str, script: str, timeout: float | None = None) -> bytes:
        return self.run(host, script, timeout=timeout).check().stdout.encode()

    def keep(self, host: str, script: str) -> None:
        """Recorded in `kept` (it would run until the connection closes)."""
        with self._lock:
            self.kept.append((host, script))

    def stats(self) -> Mapping[str, Any]:
        """Round trips per host: every call counts, as over SSH."""
        return {"round_trips": dict(Counter(host for host, _ in self.calls))}

    def close(self) -> None:
        self.closed = True

    def commands_on(self, host: str) -> list[str]:
        """Every script run on `host`, in order."""
        return [s for h, s in self.calls if h == host]


@dataclass
class FakeHost:
    """A simulated host: `files` maps paths to text; a handler for `FakeTransport.on`.

    It understands commands separated by newlines or `;` (and batch probes of them):
    `cat PATH` (exit 1 when absent), `echo WORDS [> PATH | >> PATH | >&2]`, `rm -f PATH`,
    `true`, `false` and `exit N`. Anything else fails the test.
    """

    name: str
    files: dict[str, str] = field(default_factory=dict)

    def __call__(self, host: str, script: str, stdin: bytes | None) -> tuple[int, str, str] | None:
        if host != self.name:
            return None
        batch = batch_probes(script)
        if batch is None:
            return self.sh(script)
        token, probes = batch
        return 0, batch_answer(token, [self.sh(p)[:2] for p in probes]), ""

    def sh(self, script: str) -> tuple[int, str, str]:
        """Run `script` in the tiny vocabulary: (exit, stdout, stderr)."""
        code = 0
        out: list[str] = []
        err: list[str] = []
        for argv in _commands(script):
            name, args = argv[0], argv[1:]
            if name == "exit":
                return int(args[0]) if args else code, "".join(out), "".join(err)
            if name in ("true", "false"):
                code = int(name == "false")
            elif name == "cat" and len(args) == 1:
                if args[0] in self.files:
                    code = 0
                    out.append(self.files[args[0]])
                else:
                    code = 1
                    err.append(f"cat: {args[0]}: No such file or directory\n")
            elif name == "rm" and args[:1] == ["-f"] and len(args) == 2:
                code = 0
                self.files.pop(args[1], None)
            elif name == "echo":
                code = 0
                words, target = _redirect(args)
                text = " ".join(words) + "\n"
                if target is None:
                    out.append(text)
                elif target == "&2":
                    err.append(text)
                elif target.startswith(">"):
                    self.files[target[1:]] = self.files.get(target[1:], "") + text
                else:
                    self.files[target] = text
            else:
                raise AssertionError(f"FakeHost {self.name}: unknown command {argv!r}")
        return code, "".join(out), "".join(err)


def _commands(script: str) -> Iterator[list[str]]:
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";")
        lexer.whitespace_split = True
        argv: list[str] = []
        for token in lexer:
            if token in (";", ";;"):
                if argv:
                    yield argv
                argv = []
            else:
                argv.append(token)
        if argv:
            yield argv


def _redirect(args: list[str]) -> tuple[list[str], str | None]:
    """Split `echo` arguments from a trailing redirection: `&2`, `PATH`, or `>PATH` (append)."""
    for i, arg in enumerate(args):
        if arg in (">", ">>") and i + 2 == len(args):
            return args[:i], (">" if arg == ">>" else "") + args[i + 1]
        if arg.startswith(">") and i + 1 == len(args):
            return args[:i], arg[1:]
    return args, None
