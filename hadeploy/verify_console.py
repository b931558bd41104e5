"""The verify report as the operator reads it: rich tables on a terminal, plain text elsewhere.

Pure presentation of a `hadeploy.verify.Report`; nothing here connects anywhere.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hadeploy.verify import Report, ServerState


def _state(value: str) -> str:
    style = "green" if value == "running" else "red"
    return f"[{style}]{escape(value)}[/{style}]"


def print_report(console: Console, report: Report) -> None:
    """The report as rich tables (plain text off a terminal)."""
    holders = report.holders
    holder = (f"[bold]{escape(holders[0])}[/bold]" if len(holders) == 1 else
              "[red]nobody[/red]" if not holders else f"[red]{escape(', '.join(holders))}[/red]")
    console.print(f"VIP {report.vip} is held by {holder}")

    nodes = Table(title="Balancers", title_justify="left")
    for column in ("node", "address", "keepalived", "haproxy", "VIP", "backends read"):
        nodes.add_column(column)
    for b in report.balancers:
        if not b.reachable:
            nodes.add_row(escape(b.name), b.address, "[red]?[/red]", "[red]?[/red]", "?",
                          f"[red]unreachable: {escape(b.error or '')}[/red]")
            continue
        read = (f"via {b.stats_via}" if b.stats_via and not b.stats_note else
                f"[yellow]not read: {escape(b.stats_note or '')}[/yellow]")
        nodes.add_row(escape(b.name), b.address, _state(b.keepalived), _state(b.haproxy),
                      "[bold green]holds it[/bold green]" if b.holds_vip else "backup", read)
    console.print(nodes)

    servers: dict[tuple[str, str], dict[str, ServerState]] = {}
    for b in report.balancers:
        for row in b.servers:
            servers.setdefault((row.backend, row.server), {})[b.name] = row
    if servers:
        view = Table(title="haproxy's view of the backends (show stat)", title_justify="left")
        view.add_column("backend")
        view.add_column("server")
        names = [b.name for b in report.balancers]
        for name in names:
            view.add_column(name)
        for (backend, server), seen in servers.items():
            cells = []
            for name in names:
                s = seen.get(name)
                if s is None:
                    cells.append("[dim]-[/dim]")
                    continue
                style = "green" if s.status.startswith("UP") or s.status == "OPEN" else \
                    "yellow" if s.status.startswith(("NOLB", "MAINT", "DRAIN", "no check")) \
                    else "red"
                detail = f" [dim]{escape(s.check)}[/dim]" if s.check and style != "green" else ""
                cells.append(f"[{style}]{escape(s.status)}[/{style}]{detail}")
            view.add_row(escape(backend), escape(server), *cells)
        console.print(view)

    fronts = Table(title=f"Frontends through the VIP {report.vip} (from this workstation)",
                   title_justify="left")
    for column in ("frontend", "port", "mode", "TCP", "HTTP", "note"):
        fronts.add_column(column)
    for f in report.frontends:
        tcp = (f"[green]ok {f.seconds * 1000:.0f} ms[/green]" if f.connected and f.seconds
               is not None else "[red]refused[/red]" if not f.connected else "[green]ok[/green]")
        http = str(f.http_status) if f.http_status is not None else "-"
        fronts.add_row(escape(f.name), str(f.port), f.mode, tcp, http, escape(f.note))
    console.print(fronts)

    if report.healthy:
        console.print("[bold green]healthy[/bold green]: one VIP holder, haproxy and "
                      "keepalived running on every balancer, every frontend answers")
    else:
        console.print("[bold red]UNHEALTHY[/bold red]")
        for problem in report.problems:
            console.print(f"  - {escape(problem)}")


