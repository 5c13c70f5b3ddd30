"""``vsr models pull``: resumable, atomic, verified downloads, against a local HTTP server.

The server (http.server in a thread on 127.0.0.1, ephemeral port) honours ``Range`` and can
be told to cut the connection mid-body, answer with an error, or ignore ``Range``. Offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vsr.cli import app
from vsr.errors import UnknownModelError
from vsr.models import download
from vsr.models.catalog import CatalogEntry, parse_catalog
from vsr.models.download import DownloadError, HashMismatchError, pull

PAYLOAD = bytes(range(256)) * 1200  # 307,200 bytes: several read chunks
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Server:
    base: str
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)  # path, Range, code
    cut_after: int | None = None  # the next response sends this many body bytes, then closes
    status: int | None = None  # answer every request with this error
    ignore_range: bool = False

    def entry(self, name: str = "w.bin", **kw: object) -> CatalogEntry:
        fields: dict = {
            "id": "test-w",
            "model": "espcn",
            "scale": 3,
            "url": f"{self.base}/files/{name}",
            "source": "local test server",
            "licence": "test",
        }
        fields.update(kw)
        return CatalogEntry(**fields)


def _handler(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            rng = self.headers.get("Range")
            data = state.files.get(self.path)
            code = state.status or (404 if data is None else 200)
            start = 0
            if code == 200 and rng and not state.ignore_range:
                m = re.fullmatch(r"bytes=(\d+)-", rng)
                assert m, rng
                start = int(m.group(1))
                assert data is not None
                code = 416 if start >= len(data) else 206
            state.requests.append((self.path, rng, code))
            if code >= 400:
                self.send_error(code)
                return
            assert data is not None
            body = data[start:]
            self.send_response(code)
            if code == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            cut, state.cut_after = state.cut_after, None
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    return Handler


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment must not intercept requests to the local server."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(base="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    state.files = {"/files/w.bin": PAYLOAD}
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="test-http", daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _listing(cache: Path) -> list[str]:
    folder = cache / "weights"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_records_and_shows_progress(server, tmp_path, capsys):
    entry = server.entry()
    result = pull(entry, cache=tmp_path, progress=True)
    assert result.path == tmp_path / "weights" / "w.bin"
    assert result.path.read_bytes() == PAYLOAD
    assert (result.sha256, result.size, result.resumed_from) == (SHA, len(PAYLOAD), 0)
    assert "recorded" in result.verified
    assert _listing(tmp_path) == ["w.bin"]  # no .part left
    record = json.loads((tmp_path / "registry.json").read_text())["downloads"][entry.url]
    assert record["sha256"] == SHA and record["id"] == "test-w" and record["size"] == len(PAYLOAD)
    err = capsys.readouterr().err
    assert "w.bin" in err and "100%" in err  # the tqdm bar

    again = pull(entry, cache=tmp_path, progress=False)
    assert again.already_present and again.sha256 == SHA
    assert "same as the first download" in again.verified
    assert len(server.requests) == 1  # nothing fetched the second time


def test_interrupted_download_resumes_with_range(server, tmp_path):
    entry = server.entry()
    server.cut_after = 100_000
    with pytest.raises(DownloadError) as err:
        pull(entry, cache=tmp_path, progress=False)
    line = err.value.one_line()
    assert "100000" in line and "resume" in line and "\n" not in line
    part = tmp_path / "weights" / "w.bin.part"
    assert part.stat().st_size == 100_000
    assert not (tmp_path / "weights" / "w.bin").exists()

    result = pull(entry, cache=tmp_path, progress=False)
    assert server.requests[-1] == ("/files/w.bin", "bytes=100000-", 206)
    assert result.resumed_from == 100_000
    assert result.path.read_bytes() == PAYLOAD and result.sha256 == SHA
    assert _listing(tmp_path) == ["w.bin"]


def test_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    entry = server.entry()
    server.cut_after = 50_000
    with pytest.raises(DownloadError):
        pull(entry, cache=tmp_path, progress=False)
    server.ignore_range = True
    result = pull(entry, cache=tmp_path, progress=False)
    assert server.requests[-1] == ("/files/w.bin", "bytes=50000-", 200)  # asked, not honoured
    assert result.resumed_from == 0
    assert result.path.read_bytes() == PAYLOAD
    assert _listing(tmp_path) == ["w.bin"]


def test_part_longer_than_the_file_starts_over(server, tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "w.bin.part").write_bytes(b"x" * (len(PAYLOAD) + 10))
    result = pull(server.entry(), cache=tmp_path, progress=False)
    assert [code for _, _, code in server.requests] == [416, 200]
    assert result.path.read_bytes() == PAYLOAD


def test_hash_in_file_name_is_checked(server, tmp_path):
    good = f"w-{SHA[:8]}.pth"
    server.files[f"/files/{good}"] = PAYLOAD
    result = pull(server.entry(good), cache=tmp_path, progress=False)
    assert result.verified.startswith("sha256 prefix")

    bad = "w-deadbeef.pth"
    assert not SHA.startswith("deadbeef")
    server.files[f"/files/{bad}"] = PAYLOAD
    other = tmp_path / "other"
    with pytest.raises(HashMismatchError) as err:
        pull(server.entry(bad, id="test-bad"), cache=other, progress=False)
    assert "deadbeef" in err.value.one_line() and "\n" not in err.value.one_line()
    assert _listing(other) == []  # the bad bytes are gone, no .part either
    assert not (other / "registry.json").exists()


def test_published_sha256_mismatch_is_refused(server, tmp_path):
    with pytest.raises(HashMismatchError):
        pull(server.entry(sha256="0" * 64), cache=tmp_path, progress=False)
    assert _listing(tmp_path) == []
    ok = pull(server.entry(sha256=SHA), cache=tmp_path, progress=False)
    assert ok.verified.startswith("sha256")


def test_recorded_hash_mismatch_on_a_later_download_is_refused(server, tmp_path):
    entry = server.entry()
    first = pull(entry, cache=tmp_path, progress=False)
    server.files["/files/w.bin"] = PAYLOAD[::-1]  # upstream "changed" the file
    with pytest.raises(HashMismatchError) as err:
        pull(entry, cache=tmp_path, progress=False, force=True)
    line = err.value.one_line()
    assert "first download" in line and "registry.json" in line and "\n" not in line
    assert first.path.read_bytes() == PAYLOAD  # the verified copy is kept
    assert _listing(tmp_path) == ["w.bin"]

    first.path.write_bytes(b"tampered")  # a cached file that no longer matches is removed
    with pytest.raises(HashMismatchError):
        pull(entry, cache=tmp_path, progress=False)
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("status", [500, 404])
def test_server_errors_are_one_line_and_leave_nothing(server, tmp_path, status):
    if status == 500:
        server.status = 500
        entry = server.entry()
    else:
        entry = server.entry("missing.bin")
    with pytest.raises(DownloadError) as err:
        pull(entry, cache=tmp_path, progress=False)
    line = err.value.one_line()
    assert f"HTTP {status}" in line and "\n" not in line
    assert err.value.exit_code == 1
    assert _listing(tmp_path) == []


def test_network_failure_is_one_line(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    entry = CatalogEntry(
        id="test-w", model="espcn", scale=3, url=f"http://127.0.0.1:{port}/w.bin",
        source="-", licence="-",
    )  # fmt: skip
    with pytest.raises(DownloadError) as err:
        pull(entry, cache=tmp_path, progress=False, timeout=5)
    assert "cannot reach 127.0.0.1" in err.value.one_line()
    assert _listing(tmp_path) == []


def _catalog_toml(url: str) -> str:
    return (
        "[[weights]]\n"
        'id = "test-w"\nmodel = "espcn"\nscale = 3\n'
        f'url = "{url}"\nsource = "local test server"\nlicence = "test"\n'
    )


def test_unknown_entry_lists_the_known_ones(server):
    catalog = parse_catalog(_catalog_toml(server.entry().url))
    with pytest.raises(UnknownModelError) as err:
        catalog.get("nope")
    assert "test-w" in err.value.one_line()


@pytest.mark.slow
def test_cli_pull_through_a_test_catalog(server, tmp_path, monkeypatch):
    cat = tmp_path / "catalog.toml"
    cat.write_text(_catalog_toml(server.entry().url))
    env = {**os.environ, "VSR_CATALOG": str(cat), "VSR_CACHE": str(tmp_path / "cache")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "vsr", "models", *args],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip

    proc = cli("pull", "test-w")
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path == tmp_path / "cache" / "weights" / "w.bin" and path.read_bytes() == PAYLOAD
    assert "100%" in proc.stderr and "vsr run INPUT -m espcn -x 3" in proc.stderr

    monkeypatch.setenv("VSR_CATALOG", str(cat))  # the unknown id in-process (no network)
    monkeypatch.setenv("VSR_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["models", "pull", "nope"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "test-w" in result.stderr
    assert download.read_registry(tmp_path / "cache")[server.entry().url]["sha256"] == SHA


def test_import_of_a_pulled_file_takes_the_catalog_licence(server, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file, save_file

    from vsr.models import manage
    from vsr.models.archs.espcn import ESPCN

    tiny = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in ESPCN(3, features=(4, 4)).state_dict().items()}, tiny)
    server.files["/files/tiny.safetensors"] = tiny.read_bytes()
    cat = tmp_path / "catalog.toml"
    cat.write_text(_catalog_toml(server.entry("tiny.safetensors").url))
    monkeypatch.setenv("VSR_CATALOG", str(cat))
    monkeypatch.setenv("VSR_CACHE", str(tmp_path / "cache"))

    pulled = manage.pull("test-w", progress=False)
    assert "vsr run INPUT -m espcn -x 3" in manage.pull_summary(pulled)
    result = manage.import_weights(pulled.path, name="from-catalog")
    assert (result.model, result.scale) == ("espcn", 3)
    card = result.card
    assert (card["licence"], card["catalog_id"], card["source_url"]) == (
        "test",
        "test-w",
        server.entry("tiny.safetensors").url,
    )
    from vsr.models.registry import load_model

    loaded = load_model("espcn", 3, weights=result.path).module.state_dict()
    source = load_file(str(tiny))
    assert all(torch.equal(loaded[k], v) for k, v in source.items())
