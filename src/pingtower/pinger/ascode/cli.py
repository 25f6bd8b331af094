"""`pingtower apply -f monitors.yaml` and `pingtower export`: the workspace's monitors as a file.

Registered on the main command by `register(cli)`. Both talk to the running system's HTTP API
with a token (--token, PINGTOWER_TOKEN, or the embedded mode's admin-token file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pingtower.pinger.ascode.apply import apply_plan, dump_document, load_entries, normalise
from pingtower.pinger.ascode.client import ApiError, MonitorsApi, find_token
from pingtower.pinger.ascode.plan import PlanError, compute_plan

UrlOption = Annotated[
    str, typer.Option(help="The PingTower API (the embedded process or the gateway).")
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        help="Bearer token. Default: PINGTOWER_TOKEN, else the admin-token file of the data dir."
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(help="Embedded data dir holding admin-token (PINGTOWER_DATA_DIR)."),
]
DEFAULT_URL = "http://127.0.0.1:8000"


def _api(url: str, token: str | None, data_dir: Path | None) -> MonitorsApi:
    try:
        return MonitorsApi(url, find_token(token, data_dir))
    except ValueError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None


def _fail(error: ApiError | OSError) -> typer.Exit:
    lines = error.lines() if isinstance(error, ApiError) else [f"cannot reach the API: {error}"]
    for line in lines:
        typer.echo(line, err=True)
    return typer.Exit(1)


def apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="The monitors YAML file.")],
    dry_run: Annotated[bool, typer.Option(help="Print the diff and change nothing.")] = False,
    prune: Annotated[
        bool, typer.Option(help="Delete the workspace's monitors that the file does not name.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Make the workspace's monitors match a YAML file: create, update and (with --prune)
    delete. Monitors are matched by name, or by `id` where names repeat."""
    try:
        entries = load_entries(file.read_text())
    except PlanError as error:
        for problem in error.problems:
            typer.echo(f"{file}: {problem}", err=True)
        raise typer.Exit(2) from None
    except (OSError, ValueError) as error:
        typer.echo(f"{file}: {error}", err=True)
        raise typer.Exit(2) from None
    api = _api(url, token, data_dir)
    try:
        current = api.list_all()
    except (ApiError, OSError) as error:
        raise _fail(error) from None
    try:
        plan = compute_plan(entries, current, prune=prune, normalise=normalise)
    except PlanError as error:
        for problem in error.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(2) from None
    for line in plan.render():
        typer.echo(line)
    if dry_run or not plan.has_changes:
        return
    outcome = apply_plan(plan, api, current)
    for line in outcome.done:
        typer.echo(line)
    for name, reasons in outcome.failed.items():
        for reason in reasons:
            typer.echo(f"failed {name!r}: {reason}", err=True)
    if outcome.failed:
        raise typer.Exit(1)


def export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Write the workspace's monitors as a YAML file that `apply` reads back (secrets show as
    <set>, which `apply` keeps as they are)."""
    try:
        text = dump_document(_api(url, token, data_dir).list_all())
    except (ApiError, OSError) as error:
        raise _fail(error) from None
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)


def register(cli: typer.Typer) -> None:
    cli.command()(apply)
    cli.command()(export)
