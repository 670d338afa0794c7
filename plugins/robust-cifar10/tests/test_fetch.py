"""`robust data fetch-cifar10` against a tiny archive in the official layout, served on 127.0.0.1.

The server is a real HTTP server in a thread that honours ``Range: bytes=N-`` (python's
SimpleHTTPRequestHandler does not), can cut a response short (an interrupted download) and
records the Range headers it received. The command runs through robustcli's real plugin
machinery: a dist-info holding this plugin's entry points from its pyproject.toml is put on
sys.path, so the `data` group is robust-calo's and this plugin's, merged.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import socket
import subprocess
import sys
import tarfile
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from robust_cifar10.data import ENV_VAR, write_batches
from robust_cifar10.task import Cifar10ResNetTask

PLUGIN = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 20, 10


# -- the archive and its server -------------------------------------------------------------------
@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[bytes, tuple[np.ndarray, np.ndarray]]:
    """A cifar-10-python.tar.gz in miniature: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}."""
    rng = np.random.default_rng(1)
    train = (rng.integers(0, 256, (N_TRAIN, 3072), dtype=np.uint8), rng.integers(0, 10, N_TRAIN))
    test = (rng.integers(0, 256, (N_TEST, 3072), dtype=np.uint8), rng.integers(0, 10, N_TEST))
    folder = write_batches(tmp_path_factory.mktemp("src") / "cifar-10-batches-py", train, test)
    meta = {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
                             b"ship", b"truck"], b"num_cases_per_batch": N_TRAIN // 5, b"num_vis": 3072}  # fmt: skip
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return buf.getvalue(), train


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        srv = self.server
        body: bytes = srv.files.get(self.path)  # type: ignore[attr-defined]
        srv.ranges.append(self.headers.get("Range"))  # type: ignore[attr-defined]
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and srv.honour_range:  # type: ignore[attr-defined]
            start = int(match[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        out = body[start:]
        if srv.cut_after is not None:  # type: ignore[attr-defined]
            out, srv.cut_after = out[: srv.cut_after], None  # type: ignore[attr-defined]
            self.close_connection = True  # the rest never comes
        self.wfile.write(out)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(archive):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files = {"/cifar-10-python.tar.gz": archive[0]}
    srv.ranges, srv.cut_after, srv.honour_range = [], None, True
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/cifar-10-python.tar.gz"
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


# -- robust, with this plugin's entry points installed ----------------------------------------------
def _dist_info(site: Path) -> Path:
    """A dist-info on ``site`` declaring this plugin's entry points as its pyproject.toml does."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    dist = site / f"robust_cifar10-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = []
    for group, eps in project["entry-points"].items():
        lines += [f"[{group}]", *(f"{k} = {v}" for k, v in eps.items()), ""]
    (dist / "entry_points.txt").write_text("\n".join(lines))
    return site


@pytest.fixture
def robust(tmp_path, monkeypatch):
    """The root of `robust` with every command plugin added (this one included), and a fresh cache."""
    from robustcli.cli._plugin_commands import add_plugin_commands

    monkeypatch.syspath_prepend(str(_dist_info(tmp_path / "site")))
    monkeypatch.setenv("ROBUST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    app = typer.Typer()
    app.command("version")(lambda: None)  # a second command keeps `data` a subcommand, as in robust
    add_plugin_commands(app)
    return lambda *args: CliRunner().invoke(app, ["data", "fetch-cifar10", *args])


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# -- the tests --------------------------------------------------------------------------------------
def test_fetch_downloads_checks_and_extracts_where_the_task_reads(robust, server, archive, tmp_path):
    payload, train = archive
    result = robust("--url", server.url, "--md5", _md5(payload))
    folder = tmp_path / "cache" / "cifar10" / "cifar-10-batches-py"
    assert result.exit_code == 0, result.output
    assert result.stdout == f"CIFAR-10 fetched into {folder}\n"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["cifar-10-batches-py"]  # no archive, no .part
    assert sorted(p.name for p in folder.iterdir()) == [
        "batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"
    ]  # fmt: skip
    data = Cifar10ResNetTask().load_data()  # no data_dir, no $ROBUST_CIFAR10_DIR: the cache
    assert (data.pool_size, data.test_size) == (N_TRAIN, N_TEST)
    assert data.pool_y.tolist() == train[1].tolist()
    again = robust("--url", server.url, "--md5", _md5(payload))
    assert again.exit_code == 0 and again.stdout == f"CIFAR-10 already in {folder}\n"
    assert server.ranges == [None]  # the second run asked nothing


@pytest.mark.parametrize("honour_range", [True, False], ids=["range", "server-ignores-range"])
def test_an_interrupted_download_is_continued(robust, server, archive, tmp_path, honour_range):
    payload, train = archive
    dest, half = tmp_path / "mine", len(archive[0]) // 2
    part = dest / "cifar-10-python.tar.gz.part"
    server.cut_after, server.honour_range = half, honour_range
    cut = robust("--url", server.url, "--md5", _md5(payload), "--dest", str(dest))
    assert cut.exit_code == 1
    assert cut.stderr == (
        f"error: download of {server.url} failed after {half:,} of {len(payload):,} bytes "
        f"(the connection closed early); {part} is kept: run the same command again to resume\n"
    )
    assert part.read_bytes() == payload[:half]
    done = robust("--url", server.url, "--md5", _md5(payload), "--dest", str(dest))
    assert done.exit_code == 0, done.output
    assert server.ranges == [None, f"bytes={half}-"]
    assert done.stdout == (
        f"CIFAR-10 fetched into {dest / 'cifar-10-batches-py'}; pass -o data_dir={dest} or set "
        f"{ENV_VAR}={dest} for the task to read it\n"
    )
    assert not part.exists()
    assert Cifar10ResNetTask(data_dir=str(dest)).load_data().pool_y.tolist() == train[1].tolist()


def test_a_wrong_checksum_names_the_file_and_removes_it(robust, server, archive, tmp_path):
    payload = archive[0]
    dest = tmp_path / "mine"
    result = robust("--url", server.url, "--md5", "0" * 32, "--dest", str(dest))
    assert result.exit_code == 1
    part = dest / "cifar-10-python.tar.gz.part"
    assert result.stderr == (
        f"error: {part}: MD5 {_md5(payload)} of the download from {server.url} is not the expected {'0' * 32}; "
        "the file was removed (resuming cannot repair it): run the command again to download it afresh\n"
    )
    assert os.listdir(dest) == []


def test_network_errors_exit_1_and_bad_options_exit_2(robust, server, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = robust("--url", f"http://127.0.0.1:{port}/x.tar.gz", "--dest", str(tmp_path / "a"))
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(f"error: download of http://127.0.0.1:{port}/x.tar.gz failed (")
    assert refused.stderr.endswith("); nothing was kept\n") and "refused" in refused.stderr.lower()
    missing = robust("--url", server.url.replace("cifar", "nothing"), "--dest", str(tmp_path / "a"))
    assert missing.exit_code == 1
    assert missing.stderr == f"error: download of {server.url.replace('cifar', 'nothing')} failed (HTTP 404 Not Found); nothing was kept\n"

    (tmp_path / "file").write_text("")
    for args, message in [
        (["--url", "ftp://example.org/c.tgz"], "error: --url 'ftp://example.org/c.tgz' is not an http:// or https:// address\n"),
        (["--md5", "abc"], "error: --md5 'abc' is not an MD5 digest (32 hexadecimal digits)\n"),
        (["--dest", str(tmp_path / "file")], f"error: --dest {tmp_path / 'file'} is a file; give the folder to download into\n"),
    ]:
        result = robust(*args)
        assert (result.exit_code, result.stderr) == (2, message)
    assert server.ranges == [None]  # the 404's: bad options reach no server


def test_robust_data_holds_both_plugins_commands(tmp_path):
    """The real `robust` in a subprocess: `robust data` merges robust-calo's and this plugin's commands."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_dist_info(tmp_path / "site")), *sys.path]), "COLUMNS": "300"}
    robust = [sys.executable, "-c", "from robustcli.cli.main import main; main()"]
    helped = subprocess.run([*robust, "data", "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert all(cmd in helped.stdout for cmd in ("fetch-cifar10", "make-calo", "show"))
    assert "Fetch the CIFAR-10 data set" in helped.stdout and "calorimeter shower samples" in helped.stdout



# -- archives that are not what they claim (issue 20) -------------------------------------------------
def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


_BATCHES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]


@pytest.mark.parametrize("evil", ["../escaped", "/tmp/absolute", "cifar-10-batches-py/../../escaped"])
def test_members_pointing_outside_are_refused_by_name(robust, server, tmp_path, evil):
    payload = _tar({**{f"cifar-10-batches-py/{b}": b"x" for b in _BATCHES}, evil: b"evil"})
    server.files["/cifar-10-python.tar.gz"] = payload
    dest = tmp_path / "mine"
    result = robust("--url", server.url, "--md5", _md5(payload), "--dest", str(dest))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert f"member {evil!r} points outside the folder" in result.stderr
    assert not (dest / "cifar-10-batches-py").exists() and not (tmp_path / "escaped").exists()


def test_garbage_batches_whose_md5_matches_are_not_fetched(robust, server, tmp_path):
    payload = _tar({f"cifar-10-batches-py/{b}": b"x" for b in _BATCHES})
    server.files["/cifar-10-python.tar.gz"] = payload
    dest = tmp_path / "mine"
    result = robust("--url", server.url, "--md5", _md5(payload), "--dest", str(dest))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "cifar-10-batches-py/data_batch_1 is not a CIFAR-10 batch" in result.stderr
    assert "fetched" not in result.stdout
    assert not (dest / "cifar-10-batches-py").exists()
