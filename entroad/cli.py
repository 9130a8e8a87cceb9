"""``entroad`` command line.

Each module in :mod:`entroad.commands` exposes ``register(app)`` and adds its verbs; this
file only wires them together and turns user errors (:class:`EntroADError`) into a one-line
reason with a non-zero exit code instead of a traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from entroad import __version__
from entroad.errors import EntroADError
from entroad.logs import setup_logging

app = typer.Typer(
    name="entroad",
    help=(
        "EntroAD: zero-shot anomaly detection (structural-entropy routing on CLIP) with "
        "DVC-versioned data, training, cross-domain evaluation and an MLflow registry.\n\n"
        "Every command reads params.yaml (or --params) and accepts --set section.key=value overrides."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # markdown: docstrings wrapped at 110 columns reflow to the terminal; blank lines split paragraphs
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"entroad {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    setup_logging(verbose)


def _register_commands() -> None:
    import entroad.commands as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"entroad.commands.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except EntroADError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
