"""Packages installed with the platform's package manager, recorded so rollback removes
exactly what this run added (dependencies included) and never what was there before."""

from __future__ import annotations

from dataclasses import dataclass

from hadeploy.ops.base import Command, HostContext, Operation, Probe, Record, undoer

NEW_MARK = "@@hadeploy-new-packages"


@dataclass(frozen=True)
class PackagesInstalled(Operation):
    """Every package in `packages` is installed."""

    op_id: str
    packages: tuple[str, ...]

    def probe(self, ctx: HostContext) -> str:
        return ctx.profile.installed_probe(self.packages)

    def _missing(self, seen: Probe) -> tuple[str, ...]:
        present = set(seen.stdout.split())
        return tuple(p for p in self.packages if p not in present)

    def done(self, ctx: HostContext, seen: Probe) -> bool:
        return not self._missing(seen)

    def intent(self, ctx: HostContext, seen: Probe) -> Record:
        return {"kind": "packages", "requested": list(self._missing(seen))}

    def apply(self, ctx: HostContext, seen: Probe) -> list[Command]:
        missing = self._missing(seen)
        listing = ctx.profile.all_installed_probe()
        script = (
            "set -e\n"
            "before=$(mktemp)\n"
            "trap 'rm -f \"$before\"' EXIT\n"
            f"{listing} > \"$before\"\n"
            f"{ctx.profile.install(missing)} >&2\n"
            f"echo {NEW_MARK}\n"
            f"{listing} | comm -13 \"$before\" -\n"
        )
        return [Command(script, summary=ctx.profile.install(missing))]

    def outcome(self, ctx: HostContext, outputs: list[str]) -> Record:
        text = outputs[-1] if outputs else ""
        if NEW_MARK not in text:
            return {}
        return {"installed": text.split(NEW_MARK, 1)[1].split()}

    def preview(self, ctx: HostContext, seen: Probe) -> str:
        return f"  install: {' '.join(self._missing(seen))}\n"

    def title(self) -> str:
        return f"packages {' '.join(self.packages)}"


@undoer("packages")
def undo_packages(ctx: HostContext, record: Record) -> list[Command]:
    """Remove what the run installed: those requested and every new dependency seen.

    Requested packages were missing when the run began, so removing them is always right,
    even when the install was cut off before it could report what it added. Only packages
    still installed are named, so a repeated rollback is a no-op.
    """
    installed = tuple(dict.fromkeys([*record.get("requested", ()), *record.get("installed", ())]))
    if not installed:
        return []
    probe = ctx.profile.installed_probe(installed)
    script = (f"present=$({probe} | tr '\\n' ' '); "
              f"if [ -n \"$present\" ]; then {ctx.profile.remove_prefix()} $present >&2; fi")
    return [Command(script, summary=ctx.profile.remove(installed))]
