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


if __name__ == "__main__":  # pragma: no cover
    app()
