"""Download the official CIFAR-10 python archive, verify it, extract it where the task reads.

``robust data fetch-cifar10`` (:mod:`robust_cifar10.data_cli`) calls :func:`fetch`:

1. nothing to do when the folder already holds the six batches;
2. the archive downloads into ``<dest>/cifar-10-python.tar.gz.part``; a ``.part`` left by an
   interrupted run is continued with an HTTP ``Range`` request (a server that ignores it sends
   the whole file, which then replaces the partial one);
3. its MD5 is checked against the official one (a mismatch removes the download: resuming it
   could not repair it); it is then renamed ``cifar-10-python.tar.gz``;
4. the archive's ``cifar-10-batches-py/`` is extracted (regular files only, no path outside it)
   into ``<dest>/cifar-10-batches-py/``, the folder the task finds inside ``<dest>``, and the
   archive is removed.

Network failures raise :class:`FetchError` (exit code 1) with what was kept for a resume; bad
options raise :class:`~robustcli.errors.InputError` (exit code 2). Standard library only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from robustcli.errors import InputError, RobustError

__all__ = ["ARCHIVE", "MD5", "URL", "FetchError", "fetch"]

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"
CHUNK = 1 << 20
#: what the archive holds besides the six batches the task reads
META_FILE = "batches.meta"

#: progress(done_bytes, total_bytes_or_None), called as the download moves on
Progress = Callable[[int, "int | None"], None]


class FetchError(RobustError):
    """The download failed or its content is wrong: not bad input, exit code 1."""

    exit_code = 1


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def fetch(
    dest: Path, url: str = URL, md5: str = MD5, *, progress: Progress | None = None, timeout: float = 60.0
) -> tuple[Path, bool]:
    """Make ``dest/cifar-10-batches-py`` hold the data; returns (that folder, whether it was fetched now)."""
    from robust_cifar10 import data as cifar

    if not re.fullmatch(r"https?://[^\s/]+.*", url):
        raise InputError(f"--url {url!r} is not an http:// or https:// address")
    if not re.fullmatch(r"[0-9a-fA-F]{32}", md5):
        raise InputError(f"--md5 {md5!r} is not an MD5 digest (32 hexadecimal digits)")
    md5 = md5.lower()
    dest = dest.expanduser()
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--dest {dest} is a file; give the folder to download into")
    try:
        return cifar.resolve_dir(dest), False
    except InputError:
        pass  # not there yet
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--dest {dest}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(dest, os.W_OK | os.X_OK):
        raise InputError(f"--dest {dest}: the folder is not writable")

    archive = dest / ARCHIVE
    if archive.is_file():  # verified by an earlier run whose extraction did not finish
        got = _md5(archive)
        if got != md5:
            raise FetchError(
                f"{archive}: MD5 {got} is not the expected {md5}; remove the file and run the command again"
            )
    else:
        part = dest / (ARCHIVE + ".part")
        _download(url, part, progress, timeout)
        got = _md5(part)
        if got != md5:
            part.unlink()
            raise FetchError(
                f"{part}: MD5 {got} of the download from {url} is not the expected {md5}; "
                "the file was removed (resuming cannot repair it): run the command again to download it afresh"
            )
        os.replace(part, archive)
    folder = _extract(archive, dest, (*cifar.TRAIN_FILES, cifar.TEST_FILE))
    archive.unlink()
    return cifar.resolve_dir(folder), True


def _download(url: str, part: Path, progress: Progress | None, timeout: float) -> None:
    """Fill ``part`` with the whole file at ``url``, continuing what it already holds."""
    import http.client
    import urllib.error
    import urllib.request

    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "robust-cifar10 (robust data fetch-cifar10)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    done, total = offset, None
    kept = f"{part} is kept: run the same command again to resume"

    def failed(why: str) -> FetchError:
        got = f" after {_size(done)} of {_size(total)} bytes" if done else ""
        return FetchError(f"download of {url} failed{got} ({why}); {kept if done else 'nothing was kept'}")

    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the partial file is whole
            return
        raise failed(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise failed(_reason(exc)) from None
    with response:
        if response.status == 206:
            match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "").strip())
            if match is None or int(match[1]) != offset:
                part.unlink()
                raise FetchError(
                    f"download of {url} failed (the server answered a request for bytes {offset}- with "
                    f"{response.headers.get('Content-Range')!r}); {part} was removed: run the command again"
                )
            total = int(match[3]) if match[3] != "*" else None
            mode = "ab"
        else:  # 200: the whole file, from its first byte
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done, mode = 0, "wb"
        if progress is not None:
            progress(done, total)
        try:
            with open(part, mode) as fh:
                while chunk := response.read(CHUNK):
                    fh.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, OSError) and exc.filename is not None:
                raise InputError(f"cannot write {exc.filename}: {exc.strerror or exc}") from None
            raise failed(_reason(exc)) from None
    if total is not None and done < total:
        raise failed("the connection closed early")


def _reason(exc: BaseException) -> str:
    import urllib.error

    if isinstance(exc, urllib.error.URLError) and not isinstance(exc.reason, str):
        exc = exc.reason  # type: ignore[assignment]
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def _md5(path: Path) -> str:
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _extract(archive: Path, dest: Path, needed: tuple[str, ...]) -> Path:
    """Extract the archive's ``cifar-10-batches-py/`` files into ``dest``; returns that folder."""
    import shutil
    import tarfile

    from robust_cifar10 import data as cifar_data
    from robust_cifar10.data import TAR_FOLDER

    staging = dest / f".{TAR_FOLDER}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = []
            for m in tar.getmembers():
                parts = Path(m.name).parts
                if m.name.startswith(("/", "\\")) or ".." in parts or ".." in Path(m.name.replace("\\", "/")).parts:
                    raise FetchError(f"{archive}: member {m.name!r} points outside the folder it extracts to; "
                                     f"the official archive has none: this one is refused")
                if not parts or parts[0] != TAR_FOLDER or len(parts) > 2:
                    continue  # only the batches folder's own files
                if m.isfile():
                    members.append(m)
            names = {Path(m.name).name for m in members}
            missing = [f for f in needed if f not in names]
            if missing:
                raise FetchError(f"{archive}: the archive lacks {TAR_FOLDER}/{', '.join(missing)}")
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, members=members, **extra)
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise FetchError(f"{archive}: cannot extract it ({type(exc).__name__}: {exc})") from None
    for name in needed:  # an archive whose MD5 was given matches, yet its batches may be anything
        try:
            cifar_data.read_batch(staging / TAR_FOLDER / name)
        except InputError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise FetchError(f"{archive}: {TAR_FOLDER}/{name} is not a CIFAR-10 batch ({str(exc).split(': ', 1)[-1]}); "
                             f"nothing was extracted; remove the archive and check --url and --md5") from None
    folder = dest / TAR_FOLDER
    folder.mkdir(exist_ok=True)
    for f in sorted((staging / TAR_FOLDER).iterdir()):
        os.replace(f, folder / f.name)
    shutil.rmtree(staging, ignore_errors=True)
    return folder
