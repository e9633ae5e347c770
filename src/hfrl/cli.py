"""The ``hfrl`` command line: a thin shell that parses options and calls the library.

Heavy imports (uvicorn, Spark, plotly) happen inside the command that needs them so that
``hfrl --help`` stays fast.
"""

from __future__ import annotations

import typer

from hfrl import __version__

app = typer.Typer(
    name="hfrl",
    help="RL policies fine-tuned toward historical frequency: learn, blend, evaluate, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hfrl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """RL policies fine-tuned toward historical frequency: learn, blend, evaluate, serve."""


datasets_app = typer.Typer(
    help="Fetch public datasets (the Open Bandit Dataset sample).", no_args_is_help=True
)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("obd")
def datasets_obd(
    out: str = typer.Option(..., "--out", help="Directory to put the dataset in."),
    sdist: str | None = typer.Option(
        None, "--sdist", help="An already downloaded obp-0.5.7.tar.gz (skips pip download)."
    ),
) -> None:
    """Fetch the Open Bandit Dataset small sample from the obp sdist, verify it, print its path."""
    from hfrl.datasets import fetch_obd
    from hfrl.errors import HfrlError

    try:
        root = fetch_obd(out, sdist=sdist)
    except (HfrlError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(str(root.resolve()))


# ---------------------------------------------------------------------- service (hfrl.service)
@app.command()
def serve(
    artifact: str = typer.Argument(..., help="Policy artifact to serve (saved with TabularPolicy.save)."),
    db: str = typer.Option("decisions.sqlite", "--db", help="SQLite decision log (created when absent)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    api_key_file: str | None = typer.Option(
        None, "--api-key-file", help="File holding the admin API key (default: $HFRL_API_KEY)."
    ),
    require_key: bool = typer.Option(False, "--require-key", help="Require the API key on every endpoint."),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", min=1, help="Larger bodies get 413."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the sampling generator."),
) -> None:
    """Serve a policy over HTTP (decide, feedback, reload, metrics), logging every decision to --db."""
    from hfrl.errors import HfrlError
    from hfrl.service.server import serve as run

    try:
        run(
            artifact, db, host=host, port=port, api_key_file=api_key_file, require_key=require_key,
            max_body_bytes=max_body_bytes, seed=seed,
        )
    except (HfrlError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command("export-log")
def export_log(
    db: str = typer.Argument(..., help="Decision log database written by hfrl serve."),
    out: str = typer.Option(..., "--out", help="Parquet file to write."),
    event: str | None = typer.Option(None, "--event", help="Reward from this feedback event only."),
    all_positions: bool = typer.Option(False, "--all-positions", help="Also the slots k>1 of each decision."),
) -> None:
    """Write the decision log as Parquet in the log schema, one row per decision, reward from feedback."""
    from hfrl.errors import HfrlError
    from hfrl.service.log import write_parquet

    try:
        rows = write_parquet(db, out, event=event, all_positions=all_positions)
    except (HfrlError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"wrote {rows} decisions to {out}")


if __name__ == "__main__":  # pragma: no cover
    app()
