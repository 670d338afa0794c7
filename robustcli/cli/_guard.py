"""The last line of defence: an exception no command handled becomes one line on stderr and a log
file holding its traceback; output that cannot be written (stdout on a full disk, a closed pipe)
ends the command in one line too. ``ROBUST_DEBUG=1`` prints the traceback instead of the log's path.

Kept free of torch and MLflow (``robust --help`` imports it).
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

__all__ = ["crash_log", "output_failed", "report_unexpected", "stdout_error"]


def _debug() -> bool:
    return os.environ.get("ROBUST_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _log_folders() -> list[Path]:
    """Where a crash log may go, in order: the cache's ``logs`` folder, then the system's temp folder."""
    root = os.environ.get("ROBUST_CACHE_DIR")
    cache = Path(root) if root else Path.home() / ".cache" / "robustcli"
    return [cache / "logs", Path(tempfile.gettempdir())]


def crash_log(exc: BaseException) -> Path | None:
    """Write ``exc``'s traceback (with the command line) to a new log file; its path, or None when
    no folder takes it (an unwritable cache and temp folder)."""
    text = (
        f"robust {' '.join(sys.argv[1:])}\n"
        f"{time.strftime('%Y-%m-%d %H:%M:%S %z')}, pid {os.getpid()}, python {sys.version.split()[0]}\n\n"
        + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    )
    name = f"robust-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in _log_folders():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def report_unexpected(exc: BaseException) -> int:
    """One line for an exception no command expected (a bug of robust or a plugin); the exit code (1)."""
    if isinstance(exc, OSError) and stdout_error(exc):
        return output_failed(exc)
    from robustcli.errors import first_line

    if _debug():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return 1
    log = crash_log(exc)
    where = f"the traceback is in {log}" if log is not None else "the traceback could not be saved"
    _say(f"error: unexpected {type(exc).__name__}: {first_line(exc)} ({where}; ROBUST_DEBUG=1 prints it)")
    return 1


def stdout_error(exc: OSError) -> bool:
    """Whether ``exc`` (raised while a command ran) is standard output refusing to be written: a
    closed pipe, or a write to stdout (by rich or :func:`print_json`) failing on a full disk."""
    if exc.errno == errno.EPIPE:
        return True
    outs = {id(sys.stdout), id(sys.__stdout__), id(getattr(sys.stdout, "buffer", None))}
    tb = exc.__traceback__
    while tb is not None:  # a frame writing to stdout: it holds stdout, or a console writing to it
        for value in list(tb.tb_frame.f_locals.values()):
            if id(value) in outs:
                return True
            try:
                if id(getattr(value, "file", None)) in outs:
                    return True
            except Exception:  # noqa: BLE001 - any object's attribute
                continue
        tb = tb.tb_next
    return False


def output_failed(exc: OSError) -> int:
    """End a command whose standard output cannot be written: one line on stderr (none for a closed
    pipe, as `robust ... | head` expects), stdout pointed at /dev/null so that Python's final flush
    stays quiet; the exit code (1)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # a stdout without a descriptor (a test's buffer)
        pass
    if exc.errno != errno.EPIPE:
        _say(f"error: cannot write the output to standard output ({exc.strerror or exc})")
    return 1


def finish_output(code: int | str | None) -> int | str | None:
    """Flush stdout at the end of a command: a failure there is reported as :func:`output_failed`."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        failed = output_failed(exc)
        return code if code not in (0, None) else failed
    except ValueError:
        pass
    return code


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr gone too: nothing left to tell
        pass
