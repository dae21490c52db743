"""The click that Typer runs on: recent Typer vendors it as `typer._click`, older Typer uses `click`."""

try:  # typer >= 0.20 ships its own copy of click and no longer depends on the click package
    from typer._click import exceptions
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older typer
    from click import exceptions
    from click.globals import get_current_context

__all__ = ["exceptions", "get_current_context"]
