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


if __name__ == "__main__":  # pragma: no cover
    app()
