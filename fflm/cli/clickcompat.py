"""The click that Typer runs on: recent Typer vendors it as `typer._click`, older Typer uses `click`."""

try:  # typer >= 0.20 ships its own copy of click and no longer depends on the click package
    from typer._click import exceptions
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older typer
    from click import exceptions
    from click.core import ParameterSource
    from click.globals import get_current_context


def given_options() -> set[str]:
    """The current command's parameters that were set on the command line (not left at their defaults)."""
    ctx = get_current_context()
    return {name for name in ctx.params if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}


__all__ = ["ParameterSource", "exceptions", "get_current_context", "given_options"]
