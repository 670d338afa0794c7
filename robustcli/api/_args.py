"""The API's door: every public function's keywords and argument types checked before any work,
each refusal an :class:`~robustcli.errors.InputError` in Python's words (``instances=0: ...``).

Python's own ``TypeError`` for a misspelled keyword has no suggestion (before 3.13) and reads
differently from the library's other refusals; :func:`checked` turns it into the one style.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from robustcli.errors import InputError, unknown_message
from robustcli.wording import opt

__all__ = ["checked", "choice", "count", "mapping", "names", "out_path", "sizes", "text"]

F = TypeVar("F", bound=Callable[..., Any])


def checked(func: F) -> F:
    """Refuse an unknown keyword (with the closest known one), a missing or a surplus argument as
    an InputError naming the function, before its body runs."""
    sig = inspect.signature(func)
    qual = func.__qualname__.replace(".__init__", "")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            sig.bind(*args, **kwargs)
        except TypeError as exc:
            known = [p for p, par in sig.parameters.items() if p != "self" and par.kind != par.VAR_KEYWORD]
            unknown = [k for k in kwargs if k not in sig.parameters]
            if unknown:
                raise InputError(f"{qual}() got an " + unknown_message("keyword", unknown[0], known)) from None
            raise InputError(f"{qual}(): {exc}") from None
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def count(name: str, value: Any, least: int = 1, none: bool = True) -> int | None:
    """A whole number >= ``least`` (None passes where ``none``)."""
    if value is None and none:
        return None
    if not _is_int(value) or value < least:
        need = "a positive whole number" if least == 1 else f"a whole number of at least {least}"
        if least == 2 and name == "instances":
            need += " (a spread needs two instances)"
        raise InputError(f"{opt(name, value)}: expected {need}")
    return value


def text(name: str, value: Any, none: bool = True) -> str | None:
    """A str (None passes where ``none``)."""
    if value is None and none:
        return None
    if not isinstance(value, str) or not value.strip():
        what = "one candidate's id or name (a str)" if name in ("candidate", "against") else "a non-empty str"
        raise InputError(f"{opt(name, value)}: expected {what}")
    return value


def names(name: str, value: Any, none: bool = True) -> list[str] | None:
    """One str or a list of them (ids or names)."""
    if value is None and none:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or isinstance(value, (bytes, bytearray)) or not value:
        raise InputError(f"{opt(name, value)}: expected a str or a non-empty list of str")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise InputError(f"{opt(name, value)}: {item!r} is not a str (expected candidate ids or names)")
    return list(value)


def choice(name: str, value: Any, choices: Sequence[str], none: bool = True) -> str | None:
    """One of ``choices`` (the closest suggested)."""
    if value is None and none:
        return None
    if not isinstance(value, str) or value not in choices:
        import difflib

        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5) if isinstance(value, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"{opt(name, value)}: expected one of {', '.join(map(repr, choices))}{hint}")
    return value


def mapping(name: str, value: Any, none: bool = True) -> dict[str, Any] | None:
    if value is None and none:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InputError(f"{opt(name, value)}: expected a dict with str keys")
    return dict(value)


def out_path(name: str, value: Any, suffixes: Sequence[str] = ()) -> Path | None:
    """A path (str or os.PathLike) or None; with ``suffixes``, one of them."""
    if value is None:
        return None
    if not isinstance(value, (str, Path)) and not hasattr(value, "__fspath__"):
        raise InputError(f"{opt(name, value)}: expected a path (a str or pathlib.Path)")
    path = Path(value)
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(f"{opt(name, str(path))}: write a {' or a '.join(suffixes)} file")
    return path


def sizes(value: Any) -> list[int] | str:
    """Training-sample sizes: a text as ``--sizes`` reads it, or a list of positive whole numbers."""
    from robustcli.parsing import parse_sizes

    if isinstance(value, str):
        return parse_sizes(value)
    if _is_int(value):
        value = [value]
    if not isinstance(value, Sequence) or not value:
        raise InputError(f"{opt('sizes', value)}: expected a list of whole numbers ([50, 100, 200]) or a str (\"100:32000:45\")")
    for item in value:
        if not _is_int(item) or item < 1:
            raise InputError(f"{opt('sizes', list(value))}: {item!r} is not a positive whole number")
    return parse_sizes(",".join(str(v) for v in value))
