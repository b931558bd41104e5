"""Packages installed with the platform's package manager, recorded so rollback removes
exactly what this run added (dependencies included) and never what was there before."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hadeploy import framing
from hadeploy.facts import Fact
from hadeploy.facts.system import (
    DPKG_LOCKS,
    GUARD,
    IS_GUARD,
    PM_LOCK_HOLDERS,
    POLICY_RC,
    PackagesSeen,
    packages_installed,
)
from hadeploy.ops.base import HADEPLOY_HOME, Command, HostContext, Operation, Record, private_dir
from hadeploy.ops.trees import check_tree_path
from hadeploy.quoting import q, sh

# The install prints this line, then the packages it added (what rollback removes).
NEW = "hadeploy-new-packages"
NEW_MARK = framing.tag(NEW)
# Debian starts services from package scripts unless policy-rc.d says 101; the guard puts a
# blocking one in place for the install only and restores whatever was there before. The
# guard says it is hadeploy's (facts/system.py), so that one a dead run left (its shell gone
# with the session before it could restore) is removed by the next install, or by the apply
# of an install a resume finds already done; an operator's own policy-rc.d never is.
UNGUARD = (
    f"p={POLICY_RC}; saved=\"$p.hadeploy-saved\"\n"
    "restore() {\n"
    "  if [ ! -e \"$p\" ] || " + IS_GUARD + "; then\n"
    "    rm -f \"$p\" \"$p.hadeploy-new\"\n"
    "    if [ -e \"$saved\" ]; then mv -f \"$saved\" \"$p\"; fi\n"
    "  fi\n"
    "}\n"
)
# Restore first: a guard a dead run left must not be taken for the operator's own.
BLOCK_STARTS = (
    UNGUARD + "restore\n"
    "trap restore EXIT\n"
    "trap 'exit 1' HUP INT PIPE TERM\n"
    "if [ -e \"$p\" ]; then mv -f \"$p\" \"$saved\"; fi\n"
    f"(umask 022 && printf {q(GUARD)} > \"$p.hadeploy-new\")\n"
    "chmod 755 \"$p.hadeploy-new\"; mv -f \"$p.hadeploy-new\" \"$p\"\n"
)
# Where a run's install windows are kept (see `window_file`), and dpkg's logs of this month
# and the last (logrotate's first rotation is not compressed).
WINDOWS = f"{HADEPLOY_HOME}/runs"
DPKG_LOGS = "/var/log/dpkg.log.1 /var/log/dpkg.log"
# The host's local time as dpkg's log writes it.
HOST_NOW = "$(date '+%Y-%m-%d %H:%M:%S')"


def present_among(listing: str, names: str) -> str:
    """Shell: those of the package names `names` prints (one per line) that `listing` (every
    present package) shows, one per line, sorted."""
    return ("{ " + listing + " | sed 's/^/present /'; " + names + " | sed 's/^/name /'; } | "
            "awk '$1 == \"present\" {p[$2] = 1} $1 == \"name\" {n[$2] = 1} "
            "END {for (k in n) if (k in p) print k}' | sort")


def installed_since(listing: str) -> str:
    """Shell: the packages dpkg installed afresh (not upgraded) from "$since" to "$until" (the
    host's local time, as dpkg's log writes it; an empty "$until": up to now) that `listing`
    still shows, one per line."""
    return present_among(listing, (
        "cat " + DPKG_LOGS + " 2>/dev/null | awk -v since=\"$since\" -v until=\"$until\" "
        "'($1 \" \" $2) >= since && (until == \"\" || ($1 \" \" $2) <= until) && "
        "$3 == \"install\" && $5 == \"<none>\" {sub(/:.*/, \"\", $4); print $4}'"))


def window_file(run_id: str) -> str:
    """Where a run's install on a host keeps the host's time it began (`since=`), and the time
    it ended (`until=`) once it did. The file outlives a workstation that died mid-install or
    before reading the result: the next attempt and the rollback count every package dpkg
    installed afresh in that window as the run's, which the dead attempt never reported."""
    return f"{WINDOWS}/{run_id}.packages"


def read_window(path: str) -> str:
    """Shell: `since` and `until` from the window file at `path` (both empty if absent)."""
    return (f"since=; until=; if [ -s {q(path)} ]; then "
            f"since=$(sed -n 's/^since=//p' {q(path)}); "
            f"until=$(sed -n 's/^until=//p' {q(path)}); fi\n")


def open_window(path: str) -> str:
    """Shell: the window's start, kept from an earlier attempt of the run or written now
    (owner-only, atomically)."""
    return (read_window(path)
            + 'if [ -z "$since" ]; then\n'
            + f"  since={HOST_NOW}; {private_dir(q(WINDOWS))}\n"
            + _write_window(path, "'since=%s\\n' \"$since\"")
            + "fi\n")


def close_window(path: str) -> str:
    """Shell: the window's end written after its start (atomically)."""
    return _write_window(path, f"'since=%s\\nuntil=%s\\n' \"$since\" \"{HOST_NOW}\"")


def _write_window(path: str, printf_args: str) -> str:
    """Shell: `printf PRINTF_ARGS` into the window file, owner-only and atomically."""
    return (f"(umask 077 && printf {printf_args} > {q(path + '.new')})\n"
            f"mv -f {q(path + '.new')} {q(path)}\n")


# How long an install or a removal waits for another package manager run to finish: a run
# whose workstation died leaves its apt-get or dpkg running on the host, and a resume must
# neither fail on the lock nor make the operator guess when to try again.
PM_WAIT_SECONDS = 900
# The wait's exit code when the other run is still going at the end (EX_TEMPFAIL).
PM_BUSY_EXIT = 75


def wait_for_pm(seconds: int = PM_WAIT_SECONDS, locks: tuple[str, ...] = DPKG_LOCKS) -> str:
    """Shell lines that wait, at most `seconds`, until no process holds one of `locks`, and
    fail naming the holders (pid and command line) and what to do when time runs out."""
    return PM_LOCK_HOLDERS + (
        "waited=0\n"
        f"while holders=$(hadeploy_pm_holders {sh(*locks)}) && [ -n \"$holders\" ]; do\n"
        f"  if [ \"$waited\" -ge {seconds} ]; then\n"
        f"    echo \"the package manager is still busy after {seconds}s, held by:\" >&2\n"
        "    echo \"$holders\" | sed 's/^/  pid /' >&2\n"
        "    echo 'let it finish (or stop it), then run hadeploy again with --resume' >&2\n"
        f"    exit {PM_BUSY_EXIT}\n"
        "  fi\n"
        "  sleep 1; waited=$((waited + 1))\n"
        "done\n"
    )


FINISH_DPKG = ("if [ -n \"$(dpkg --audit 2>/dev/null)\" ]; then "
               "DEBIAN_FRONTEND=noninteractive dpkg --configure -a --force-confold >&2; fi\n")


def configure_again(install: str) -> str:
    """Shell (apt): `install`; when it fails with packages left half-configured (a
    maintainer script failed), configure them once more, say so, and install again: Horizon's
    static-file compression in openstack-dashboard's postinst failed once in six lab installs
    (a pyScss syntax error on a file it compiles fine the next time). A second failure, or a
    failure that left nothing half-configured, fails the step with apt's status."""
    notice = framing.tag(framing.NOTICE)
    return (f"{install} >&2 || {{\n"
            "  status=$?\n"
            "  half=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' 2>/dev/null | "
            "awk '$1 ~ /^i[FU]/ {print $2}' | tr '\\n' ' ')\n"
            '  [ -n "$half" ] || exit "$status"\n'
            f'  echo "{notice} the install stopped in the configuration of ${{half% }}: '
            'configuring once more (dpkg --configure -a), then installing again"\n'
            "  DEBIAN_FRONTEND=noninteractive dpkg --configure -a --force-confold >&2\n"
            f"  {install} >&2\n"
            "}\n")


@dataclass(frozen=True)
class PackagesInstalled(Operation[PackagesSeen]):
    """Every package in `packages` is installed.

    With `block_service_starts`, Debian package scripts may not start services during the
    install (an unconfigured API would start and crash-loop before its configuration
    arrives); other platforms do not start services from packages anyway.

    `creates` names directories the packages make (a service's /etc tree). Those absent
    before the install are recorded, and rollback deletes them after removing the packages:
    a purge keeps files that maintainer scripts generated rather than shipped, so without
    this a rolled-back controller would keep a half-configured /etc/glance.
    """

    op_id: str
    packages: tuple[str, ...]
    block_service_starts: bool = False
    creates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for path in self.creates:
            check_tree_path(f"creates {path!r}", path, below_top=True)

    def fact(self, ctx: HostContext) -> Fact[PackagesSeen]:
        return packages_installed(ctx.profile, self.packages, self.creates,
                                  guard=self.block_service_starts)

    def _missing(self, seen: PackagesSeen) -> tuple[str, ...]:
        return tuple(p for p in self.packages if p not in seen.installed)

    def done(self, ctx: HostContext, seen: PackagesSeen) -> bool:
        return not self._missing(seen) and not seen.stale_guard

    def intent(self, ctx: HostContext, seen: PackagesSeen) -> Record:
        record: Record = {"kind": "packages", "requested": list(self._missing(seen))}
        if seen.absent:
            record["created"] = list(seen.absent)
        if ctx.profile.family == "debian" and self._missing(seen):
            record["window"] = window_file(ctx.run_id)
        return record

    def apply(self, ctx: HostContext, seen: PackagesSeen) -> list[Command]:
        missing = self._missing(seen)
        if not missing:  # only a dead run's guard to take away
            return [Command(UNGUARD + "restore\n",
                            summary=f"remove the {POLICY_RC} an interrupted install left")]
        debian = ctx.profile.family == "debian"
        listing = ctx.profile.all_installed_probe()
        block = self.block_service_starts and debian
        install = ctx.profile.install(missing)
        window = window_file(ctx.run_id)
        # The listing before the install is kept in a variable, not a file: a shell that dies
        # with a dead workstation's session must leave nothing behind. Packages that appear
        # once in `before, before, after` are the new ones; on Debian so are those dpkg
        # installed afresh since the run's first attempt began (see `window_file`): a dead
        # attempt's, which the listing above, taken after them, counts as there before.
        new = "{ printf '%s\\n' \"$before\" \"$before\"; " + listing + "; } | sort | uniq -u\n"
        if debian:
            new = "{ " + new.strip() + "; " + installed_since(listing) + "; } | sort -u\n"
        script = (
            "set -e\n"
            + (open_window(window) if debian else "")
            + (BLOCK_STARTS if block else "")
            + f"before=$({listing})\n"
            # Packages a left-over run finishes installing while this one waits count as
            # added here (the listing above is older): rollback removes them too.
            + (wait_for_pm() if debian else "")
            # A crash or reboot in the middle of dpkg (a run resumed after one) leaves
            # packages half-configured, and apt-get refuses everything until dpkg finishes
            # them: do what its message says, only when dpkg's own audit reports such packages.
            + (FINISH_DPKG if debian else "")
            + (configure_again(install) if debian else f"{install} >&2\n")
            + (close_window(window) if debian else "")
            + f"echo {NEW_MARK}\n" + new
        )
        note = " (service starts blocked during the install)" if block else ""
        return [Command(script, summary=ctx.profile.install(missing) + note,
                        notice=_busy_notice(seen.busy))]

    def outcome(self, ctx: HostContext, outputs: list[str]) -> Record:
        added = framing.after_tag(NEW, outputs[-1] if outputs else "")
        return {} if added is None else {"installed": added.split()}

    def preview(self, ctx: HostContext, seen: PackagesSeen) -> str:
        missing = self._missing(seen)
        return (f"  install: {' '.join(missing)}\n" if missing else
                f"  remove the {POLICY_RC} an interrupted install left\n")

    def title(self) -> str:
        return f"packages {' '.join(self.packages)}"


def _busy_notice(holders: tuple[str, ...]) -> str:
    """What the operator reads while the install waits for another package manager run."""
    if not holders:
        return ""
    return (f"waiting (at most {PM_WAIT_SECONDS // 60} min) for the package manager run "
            f"already under way to finish: pid {'; pid '.join(holders)}")


#: Shell function: the packages of "$1" (about to be purged) whose purge would delete a
#: directory holding a mount point of the table "$2" (/proc/self/mounts), one "package mount"
#: pair per line. A package's own directories (dpkg's record, every owner in "$1") count,
#: and so do /var/lib/NAME, /var/log/NAME, /var/cache/NAME, /var/lock/NAME, /var/spool/NAME,
#: /etc/NAME and /srv/NAME for the packages NAME, NAME-* and python3-NAME, which maintainer
#: scripts delete with `rm -rf` on purge (openstack-pkg-tools' pkgos_postrm: /var/lib/glance,
#: where a shared image store is mounted).
DATA_KEEPERS = r"""hadeploy_data_keepers() {
  awk '$2 != "/" && $2 !~ /^\/(proc|sys|dev|run|tmp)(\/|$)/ {print $2}' "$2" |
  sort -u | while read -r m; do
    d=$m; dirs=""
    while [ "$d" != / ] && [ -n "$d" ]; do dirs="$dirs $d"; d=$(dirname "$d"); done
    dpkg-query -S $dirs 2>/dev/null | grep -v '^diversion ' | awk -v m="$m" -v present=" $1 " '
      function base(n) { sub(/:.*/, "", n); return n }
      function have(n) { return index(present, " " base(n) " ") > 0 }
      BEGIN {
        k = split(m, part, "/"); n = split(present, p, " "); name = ""
        if (k >= 4 && part[2] == "var" && part[3] ~ /^(lib|log|cache|lock|spool)$/) name = part[4]
        else if (k >= 3 && part[2] ~ /^(etc|srv)$/) name = part[3]
        if (name != "") for (i = 1; i <= n; i++) {
          b = base(p[i])
          if (b == name || index(b, name "-") == 1 || b == "python3-" name) print b, m
        }
      }
      { i = index($0, ": "); c = split(substr($0, 1, i - 1), o, ", "); all = 1
        for (j = 1; j <= c; j++) if (!have(o[j])) all = 0
        if (all) for (j = 1; j <= c; j++) print base(o[j]), m }'
  done | sort -u
}
"""


def purge_keeping_mounted_data(probe: str, purge: str, mounts: str = "/proc/self/mounts") -> str:
    """Shell (apt): purge what is in `$present`, except packages whose purge would delete a
    directory holding a mount point (a shared image store under /var/lib/glance, say): those
    are removed, not purged, so the mounted data stays, and the operator is told which ones
    and how to purge them once it is unmounted."""
    remove = "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q -o DPkg::Lock::Timeout=60"
    left = ("dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' $asked 2>/dev/null | "
            "awk '$2 ~ /^rc/ {print $1}' | tr '\\n' ' '")
    notice = framing.tag(framing.NOTICE)
    return (DATA_KEEPERS
            + f'asked=$present; kept=$(hadeploy_data_keepers "$present" {q(mounts)})\n'
            + 'if [ -n "$kept" ]; then\n'
            + "  keep=$(echo \"$kept\" | awk '{print $1}' | sort -u | tr '\\n' ' ')\n"
            + "  held=$(echo \"$kept\" | awk '{print $2}' | sort -u | tr '\\n' ' ')\n"
            + f"  {remove} $keep >&2\n"
            + f"  present=$({{ {probe}; }} | tr '\\n' ' ')\n"
            + "fi\n"
            + f'if [ -n "$present" ]; then {purge} $present >&2 || exit $?; fi\n'
            + 'if [ -n "$kept" ]; then\n'
            + f"  left=$({left})\n"
            + f'  echo "{notice} removed, not purged: ${{left% }}: their purge deletes the '
            + "directory holding the mount point ${held% } (its data stays); once that is "
            + 'unmounted: apt-get purge ${left% }"\n'
            + "fi\n")


def _window(record: Record) -> str | None:
    """The record's window file (see `window_file`), if it names one where they are kept:
    the journal is a file an operator can edit."""
    window = record.get("window")
    if window is None:
        return None
    if not isinstance(window, str) or not re.fullmatch(
            re.escape(WINDOWS) + r"/[A-Za-z0-9_-]+\.packages", window):
        raise ValueError(f"the journal's package window {window!r} is not a "
                         f"{WINDOWS}/RUN.packages file")
    return window


def undo_packages(ctx: HostContext, record: Record) -> list[Command]:
    """Remove what the run installed: those requested and every new dependency seen.

    Requested packages were missing when the run began, so removing them is always right,
    even when the install was cut off before it could report what it added. Only packages
    still installed are named, so a repeated rollback is a no-op. Data on a mount point is
    never deleted: a purge that would is a removal (Debian, `purge_keeping_mounted_data`), and the
    directories the record lists as created by the install (absent before it) are deleted
    without crossing into another file system.
    """
    installed = tuple(dict.fromkeys([*record.get("requested", ()), *record.get("installed", ())]))
    commands = []
    if installed:
        probe = ctx.profile.installed_probe(installed)
        listing = ctx.profile.all_installed_probe()
        window = _window(record)
        if ctx.profile.family == "debian":
            # Also take away a guard that a deploy killed mid-install left behind, and what
            # dpkg installed in the run's window (an attempt that died before it reported).
            script = (UNGUARD + "restore\n" + wait_for_pm()
                      + f"present=$({{ {probe}; }} | tr '\\n' ' ')\n"
                      + ((read_window(window) + 'if [ -n "$since" ]; then present=$({ printf '
                          "'%s\\n' $present; " + installed_since(listing) + "; } | sort -u | "
                          "tr '\\n' ' '); fi\n") if window else "")
                      + 'if [ -n "$present" ]; then\n'
                      + purge_keeping_mounted_data(present_among(listing, "printf '%s\\n' $asked"),
                                                   ctx.profile.remove_prefix())
                      + "fi")
        else:
            script = (f"present=$({{ {probe}; }} | tr '\\n' ' '); if [ -n \"$present\" ]; then "
                      f"{ctx.profile.remove_prefix()} $present >&2; fi")
        commands.append(Command(script, summary=ctx.profile.remove(installed)))
    created = [str(p) for p in record.get("created", ())]
    for path in created:
        # The journal is a file an operator can edit: never let it name / or a top-level dir.
        check_tree_path(f"refusing to delete {path!r}, which the journal names as created by "
                        "the install", path, below_top=True)
    if created:
        commands.append(Command("rm -rf --one-file-system -- "
                                + " ".join(q(p) for p in created)))
    return commands
