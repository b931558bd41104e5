"""The command line of `python bench/run.py`: its flags, and the benchmark they start (the
lab's rounds for each host count, then the offline plan; or the offline plan alone)."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.ansible_runner import ensure_ansible
from bench.lab_report import report, write_raw
from bench.lab_rounds import measure
from bench.live_changes import main as live_changes
from bench.offline_plan import OfflinePlanFigures, measure_offline_plan
from bench.offline_report import offline_section, write_offline_section
from bench.paths import BENCH, ROOT
from bench.process import log
from bench.samples import Samples
from bench.sections import write_section
from bench.time_to_ha import measure_time_to_ha, write_figures
from bench.time_to_ha_report import TIME_TO_HA_SECTION, time_to_ha_section

DESCRIPTION = ("Benchmark `deploy-lb` in the lab: hadeploy cold and no-op, the SSH floor, "
               "ansible-core.")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--hosts", default="3,12", help="LB host counts (default 3,12)")
    parser.add_argument("--runs", default="5", help="rounds per host count; one number, or "
                        "one per host count (e.g. 5,3)")
    parser.add_argument("--no-ansible", action="store_true", help="skip ansible")
    parser.add_argument("--state-dir", type=Path, default=Path("/var/tmp/hadeploy-bench"),
                        help="where the lab and the work files live while measuring")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--hadeploy-src", type=Path, default=ROOT,
                        help="measure the hadeploy in this source tree instead (e.g. an older "
                        "`git archive`, for before/after figures)")
    parser.add_argument("--offline-plan", type=int, metavar="N",
                        help="only measure the offline plan of a generated inventory of N load "
                        "balancers (no lab, no root); updates its section of --out")
    parser.add_argument("--profile", action="store_true",
                        help="with --offline-plan: cProfile one in-process plan (stderr)")
    parser.add_argument("--baseline-src", type=Path,
                        help="with --offline-plan: also measure the hadeploy in this source tree "
                        "(e.g. a `git archive` of an older commit), as a second row")
    parser.add_argument("--baseline-label", default="baseline",
                        help="what --baseline-src is, for the table (e.g. a commit)")
    parser.add_argument("--time-to-ha", action="store_true",
                        help="also measure deploy-controllers of the whole control plane "
                        "against its floor, and its no-op (after the LB host counts; "
                        "`--hosts none` for it alone); writes its section of --out")
    parser.add_argument("--live-changes", action="store_true",
                        help="only the requests failed while a live control plane changes "
                        "(runs tests/lab/test_live_changes.py; writes bench/LIVE-CHANGES.md)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, measure every host count, write RESULTS.md and raw samples."""
    parser = _parser()
    args = parser.parse_args(argv)
    command = "python bench/run.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.live_changes:
        return live_changes()
    out: Path = args.out
    src: Path = args.hadeploy_src.resolve()
    if args.offline_plan is not None:
        baseline: Path | None = args.baseline_src
        return _offline_plan_only(
            args.offline_plan, int(args.runs.split(",")[0]), src, args.profile,
            None if baseline is None else (args.baseline_label, baseline.resolve()),
            out, command.strip())
    if os.geteuid() != 0:
        print("bench/run.py needs root (it builds the lab)", file=sys.stderr)
        return 2
    counts = [] if args.hosts == "none" else [int(n) for n in args.hosts.split(",")]
    runs = [int(n) for n in args.runs.split(",")]
    if len(runs) == 1:
        runs *= len(counts)
    if len(runs) != len(counts) and counts:
        parser.error("--runs needs one number or one per host count")
    if not counts and not args.time_to_ha:
        parser.error("--hosts none measures nothing without --time-to-ha")
    return _lab_benchmark(counts, runs, not args.no_ansible, args.state_dir, src, out,
                          command.strip(), args.time_to_ha)


def _offline_plan_only(lbs: int, runs: int, src: Path, profile: bool,
                       baseline: tuple[str, Path] | None, out: Path, command: str) -> int:
    """Measure the offline plan (and a baseline tree's), and replace its section of `out`."""
    started = time.time()
    rows: list[tuple[str, OfflinePlanFigures]] = [
        ("this tree", measure_offline_plan(lbs, runs, src, profile))]
    if baseline is not None:
        label, baseline_src = baseline
        rows.append((f"baseline: {label}", measure_offline_plan(lbs, runs, baseline_src)))
    section = offline_section(rows, command, started)
    write_offline_section(out, section)
    log(f"updated the offline plan section of {out}")
    print(section)
    return 0


def _lab_benchmark(counts: list[int], runs: list[int], ansible: bool, state_dir: Path,
                   src: Path, out: Path, command: str, time_to_ha: bool = False) -> int:
    """Measure each host count in its own lab, write `out` and its raw samples beside it,
    then (`time_to_ha`) the whole plane's deploy-controllers into its section, then the
    offline plan of 200 hosts into its section of `out`."""
    # A CI timeout's SIGTERM must still take the lab down (the finally blocks).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.time()
    playbook = ensure_ansible() if ansible and counts else None
    raw = out.with_name(out.stem + ".json")
    results: list[Samples] = []

    def save(current: Samples) -> None:  # after every round: an interrupted run keeps data
        write_raw(raw, [*results, current] if current not in results else results)

    for count, n in zip(counts, runs, strict=True):
        results.append(measure(count, n, playbook, state_dir, src, save))
        save(results[-1])
    if results:
        out.write_text(report(results, command, playbook, started))
    if time_to_ha:
        figures = measure_time_to_ha(
            state_dir, lambda f: write_figures(out.with_name("TIME-TO-HA.json"), f))
        write_section(out, TIME_TO_HA_SECTION, time_to_ha_section(figures, command,
                                                                  time.time()))
        if not results:
            log(f"updated the time-to-HA section of {out}")
            print(out.read_text())
            return 0
    offline = measure_offline_plan(200, 5, src)
    write_offline_section(out, offline_section(
        [("this tree", offline)],
        "python bench/run.py --offline-plan 200 --runs 5 (part of the run above)", time.time()))
    log(f"wrote {out} and {raw}")
    print(out.read_text())
    return 0
