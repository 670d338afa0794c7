"""The Typer face of robust: parse, call the library's API (:mod:`robustcli.api`, never a layer below
it), render with rich. No torch or MLflow at import.

For plugin authors: a command a plugin adds (entry-point group ``robustcli.commands``) wraps its
function in :func:`handle_errors`, as the built-in commands do::

    from robustcli.cli import handle_errors

    @app.command("fetch")
    @handle_errors
    def fetch(...) -> None: ...

so that a :class:`robustcli.errors.RobustError` it raises (``InputError`` for bad input) is one
line on stderr with its exit code (2 for bad input), a tracking store gone away is one line
(exit 1), and any other exception is one line with its traceback written to a log file.
"""

from robustcli.cli._common import handle_errors

__all__ = ["handle_errors"]
