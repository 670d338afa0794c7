"""`robust data fetch-cifar10`: the CIFAR-10 data one command away.

Registered as the command plugin ``data`` (entry point group ``robustcli.commands``); robust-calo
registers ``data`` too, and robustcli merges the two into one ``robust data`` group. Imported
when `robust --help` runs, so only typer and robustcli's light helpers load at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robust_cifar10.fetch import MD5, URL
from robustcli.cli import handle_errors

app = typer.Typer(
    name="data",
    help="Fetch the CIFAR-10 data set (robust-cifar10).\n\nExample: robust data fetch-cifar10",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)



@app.command("fetch-cifar10")
@handle_errors
def fetch_cifar10(
    dest: Annotated[
        Path | None,
        typer.Option(
            "--dest",
            help="Folder to put it in (as cifar-10-batches-py/). Default: where the cifar10-resnet task looks, "
            "$ROBUST_CIFAR10_DIR, else $ROBUST_CACHE_DIR/cifar10 (~/.cache/robustcli/cifar10).",
            show_default=False,
        ),
    ] = None,
    url: Annotated[str, typer.Option("--url", help="Where to download cifar-10-python.tar.gz from (a mirror).")] = URL,
    md5: Annotated[str, typer.Option("--md5", help="Expected MD5 of the archive (the official one's by default).")] = MD5,
) -> None:
    """Download CIFAR-10 (python version, 170 MB), check its MD5 and extract it where the task reads it.

    An interrupted download is continued by running the command again (HTTP Range on the
    .part file). The archive is removed once extracted; nothing is done when the data are
    already there. Exit code 1 for a failed download or a wrong checksum, 2 for bad options.

    Example: robust data fetch-cifar10 --dest /data/cifar10
    """
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from robust_cifar10.data import ENV_VAR, default_dir
    from robust_cifar10.fetch import ARCHIVE, fetch

    default, _ = default_dir()
    target = dest if dest is not None else default
    console = Console(stderr=True)
    bar = Progress(
        TextColumn(ARCHIVE),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,  # a log gets the closing line below, not bar frames
    )
    shown: list[int] = []  # the bar's task, once the download starts

    def progress(done: int, total: int | None) -> None:
        if not shown:
            bar.start()
            shown.append(bar.add_task("download", total=total))
        bar.update(shown[0], completed=done, total=total)

    try:
        folder, fetched = fetch(target, url, md5, progress=progress)
    finally:
        if shown:
            bar.stop()
    where = "" if target.expanduser().resolve() == default.expanduser().resolve() else (
        f"; pass -o data_dir={target} or set {ENV_VAR}={target} for the task to read it"
    )
    verb = "fetched into" if fetched else "already in"
    print(f"CIFAR-10 {verb} {folder}{where}", file=sys.stdout)
