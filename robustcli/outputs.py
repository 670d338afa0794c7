"""Files a command writes (a figure, a report, a loss table): checked before the work that fills
them, so that a path that cannot be written is refused in one line before anything trains."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from robustcli.errors import InputError, RobustError

__all__ = ["check_output_file", "write_failed"]


def check_output_file(path: str | Path, option: str = "--out", suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a file this process can create or replace, or an InputError naming ``option``.

    A missing parent folder is fine where one can be made (the writers make it); the file itself is
    probed by opening it for writing (and removed again if the probe created it): permission bits
    say nothing to root, and /proc or a read-only mount refuse only an actual open."""
    path = Path(path)
    where = f"{option} {str(path)!r}"
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(f"{where}: expected a file ending in {' or '.join(suffixes)}")
    if path.is_dir():
        raise InputError(f"{where} is a folder: give a file name")
    parent = path.parent
    while not parent.exists():  # the nearest existing folder must take a new one
        if parent == parent.parent:
            break
        parent = parent.parent
    if parent != path.parent:
        if not parent.is_dir():
            raise InputError(f"{where}: {str(parent)!r} is not a folder")
        try:  # a probe folder, removed at once: only an actual mkdir tells
            os.rmdir(tempfile.mkdtemp(prefix=".robust-probe-", dir=parent))
        except OSError as exc:
            raise InputError(f"{where}: cannot write there (no folder can be made in {str(parent)!r}: "
                             f"{exc.strerror or exc})") from None
        return path
    if not parent.is_dir():
        raise InputError(f"{where}: {str(parent)!r} is not a folder")
    existed = path.exists()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    except OSError as exc:
        raise InputError(f"{where}: cannot write there ({exc.strerror or exc})") from None
    os.close(fd)
    if not existed:
        try:
            path.unlink()
        except OSError:
            pass
    return path


def write_failed(path: str | Path, exc: OSError, option: str = "--out") -> RobustError:
    """The error line for a write that failed after the checks (a disk that filled meanwhile)."""
    return RobustError(f"{option} {str(path)!r}: cannot write there ({exc.strerror or exc})")
