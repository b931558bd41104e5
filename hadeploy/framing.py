"""In-band framing: how one remote script marks the parts of its stdout so they can be told
apart again on the workstation.

Every marker hadeploy prints starts with `@@`, and this module is the only one that writes or
reads them: the engine's batched probes, named sections of a read-only report, and tagged
lines that a probe or command prints among other output. The fake transport in
`hadeploy.testing` answers batches through the same functions, so the format cannot drift.
The other direction too: a stream the engine carries from one host to another's stdin goes
with its size and sha256 (`carried`, `receive_carried`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

PREFIX = "@@"
# Exit code reported for a probe whose end marker never arrived (the batch was cut short).
LOST = 255


def tag(name: str) -> str:
    """The marker `@@name` that starts a tagged line or a section."""
    return f"{PREFIX}{name}"


# -- batches: many probes in one round trip, each with its own output and exit code ---------

# A probe that waits mostly on something other than its host's shell (a Keystone login
# hashing a password, an API's answer) starts with this no-op: a batch runs it beside the
# others (`batch_script`).
BESIDE = f": '{tag('beside')}'; "


def beside(probe: str) -> str:
    """`probe`, marked to run beside the other probes of a batch (`batch_script`); alone it
    runs as it is."""
    return probe if probe.startswith(BESIDE) else BESIDE + probe


def _frame(index: int, probe: str, token: str) -> str:
    return f"echo '{tag(token)} {index}'; ( {probe}\n) 2>/dev/null; echo \"{tag(token)} rc $?\""


def batch_script(probes: Sequence[str], token: str) -> str:
    """One script running every probe in a subshell, framed by `@@TOKEN INDEX` and
    `@@TOKEN rc CODE` lines; a probe's stderr is dropped (probes are read-only checks).

    Each probe marked `beside` runs at once, as the left side of a pipe whose right side
    runs the rest (the other probes, on the script's own stdin, then the pipes' frames
    copied out): nothing is written on the host, and the frames say which probe each is."""
    lanes = [i for i, probe in enumerate(probes) if probe.startswith(BESIDE)]
    if len(lanes) == len(probes):
        lanes = lanes[1:]  # the first of them is the rest
    if not lanes:
        return "\n".join(_frame(i, probe, token) for i, probe in enumerate(probes))
    aside = set(lanes)
    rest = "\n".join(_frame(i, probe, token) for i, probe in enumerate(probes)
                     if i not in aside)
    script = f"{{ {rest}\n}} <&4 4<&-"
    for i in lanes:
        script = f"{{ {_frame(i, probes[i], token)}\n}} </dev/null 4<&- | {{ {script}; cat; }}"
    return f"exec 4<&0\n{script}"


def split_batch(stdout: str, count: int, token: str) -> list[tuple[str, int]]:
    """`batch_script` output back into (stdout, exit code) per probe, by the index each
    frame names; a probe whose frame is missing or unfinished (output cut short) gets
    empty output and exit code `LOST`."""
    found: dict[int, tuple[str, int]] = {}
    index: int | None = None
    for chunk in stdout.split(f"{tag(token)} ")[1:]:
        if chunk.startswith("rc "):
            code = chunk[3:].split("\n", 1)[0]
            if index is not None:
                found[index] = (found[index][0], int(code) if code.isdigit() else LOST)
            index = None
            continue
        head, _, body = chunk.partition("\n")
        index = int(head) if head.isdigit() else None
        if index is not None:
            found[index] = (body, LOST)  # until its exit code arrives
    return [found.get(i, ("", LOST)) for i in range(count)]


def is_batch_output(stdout: str, token: str) -> bool:
    """Whether `stdout` holds at least one frame of batch `token` (the batch script ran)."""
    return tag(token) in stdout


_BATCH_PART = re.compile(
    r"echo '@@(?P<token>\w+) (?P<index>\d+)'; \( (?P<probe>.*?)\n\) 2>/dev/null; "
    r'echo "@@(?P=token) rc \$\?"',
    re.DOTALL,
)


def parse_batch_script(script: str) -> tuple[str, list[str]] | None:
    """The token and probes of a script built by `batch_script`, in index order, or None
    for other scripts (test doubles answer batches one probe at a time with this)."""
    parts = list(_BATCH_PART.finditer(script))
    if not parts or not script.startswith((f"echo '{PREFIX}", f"exec 4<&0\n{{ echo '{PREFIX}")):
        return None
    ordered = sorted(parts, key=lambda m: int(m["index"]))
    return parts[0]["token"], [m["probe"] for m in ordered]


def batch_answer(token: str, answers: Sequence[tuple[int, str]]) -> str:
    """The stdout a batch would print if its probes exited and printed as in `answers`."""
    return "".join(f"{tag(token)} {index}\n{stdout}{tag(token)} rc {code}\n"
                   for index, (code, stdout) in enumerate(answers))


# -- sections: one script, several named read-only parts ------------------------------------

def sections_script(name: str, sections: Sequence[tuple[str, str]]) -> str:
    """One script running each (section, shell) pair after an `@@name SECTION` line."""
    return "\n".join(f"echo '{tag(name)} {section}'; {script}" for section, script in sections)


def split_sections(name: str, stdout: str) -> dict[str, str]:
    """`sections_script` output back into section name -> its output."""
    sections: dict[str, str] = {}
    for chunk in stdout.split(f"{tag(name)} ")[1:]:
        section, _, body = chunk.partition("\n")
        sections[section.strip()] = body
    return sections


# -- tagged lines: marked lines among other output -----------------------------------------

#: The tag of a line a command prints for the operator to read (the runner shows it).
NOTICE = "notice"


def tagged_words(name: str, stdout: str) -> list[list[str]]:
    """The words after `@@name` of every line that starts with it, in order."""
    marker = tag(name)
    return [line.split()[1:] for line in stdout.splitlines()
            if line == marker or line.startswith(marker + " ")]


def untagged_lines(name: str, stdout: str) -> list[str]:
    """The lines of `stdout` that are not tagged `@@name`."""
    marker = tag(name)
    return [line for line in stdout.splitlines()
            if line != marker and not line.startswith(marker + " ")]


def after_tag(name: str, stdout: str) -> str | None:
    """What follows the first `@@name` in `stdout`, or None when it never appears."""
    marker = tag(name)
    if marker not in stdout:
        return None
    return stdout.split(marker, 1)[1]


# -- streams carried from one host to another --------------------------------------------------

def carried(data: bytes) -> bytes:
    """`data` as the engine hands it to the receiving host: a `SIZE SHA256` line first, so the
    receiver can tell a whole stream from one cut off by a dying workstation (a tar archive
    cut at a member boundary extracts without an error, files missing)."""
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}\n".encode() + data


def receive_carried(path: str, what: str) -> str:
    """Shell lines reading a `carried` stream from stdin into the file at `path` (a quoted
    word or variable, created owner-only), then exiting 1 naming `what` (expanded in double
    quotes: plain words and `$variables` only) unless all of it arrived."""
    return (
        "size=none sum=none\n"
        "IFS=' ' read -r size sum || true\n"
        f"(umask 077 && : > {path})\n"
        f'case "$size" in *[!0-9]*|"") ;; *) head -c "$size" > {path} ;; esac\n'
        + check_arrived(path, '"$size"', '"$sum"',
                        f'"{what} arrived incomplete; nothing was replaced"')
    )


def check_arrived(path: str, size: str, digest: str, message: str) -> str:
    """Shell lines exiting 1 with `message` (a shell word) unless the file at `path` holds
    exactly `size` bytes with sha256 `digest` (shell words too): what a dying workstation cut
    off never goes further. Both carried streams and uploaded files are checked here."""
    return (
        f'if [ "$(wc -c < {path} | tr -d \' \')" != {size} ] || '
        f'[ "$(sha256sum < {path} | cut -d\' \' -f1)" != {digest} ]; then\n'
        f"  echo {message} >&2; exit 1\n"
        "fi\n"
    )
