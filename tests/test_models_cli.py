"""``vsr models list / info / import`` and the weights catalog file. Offline.

Every check is made against whatever the registry holds (never a fixed list of models).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from vsr.cli import app
from vsr.models import manage
from vsr.models.archs.espcn import ESPCN
from vsr.models.catalog import CATALOG_PATH, CatalogError, load_catalog, parse_catalog
from vsr.models.registry import REGISTRY, default_weights


def _cli(*args: str, cache: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "VSR_CACHE": str(cache)}
    env.pop("VSR_CATALOG", None)
    return subprocess.run(
        [sys.executable, "-m", "vsr", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty user cache for this test (in-process and for subprocesses)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("VSR_CACHE", str(path))
    monkeypatch.delenv("VSR_CATALOG", raising=False)
    return path


def _invoke(*args: str) -> tuple[int, str, str]:
    """Run the Typer app in-process: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _builtin_scales(name: str) -> list[int]:
    spec = REGISTRY[name]
    if not spec.needs_weights:
        return []
    return [s for s in spec.scales if default_weights(name, s).is_file()]


@pytest.mark.slow
def test_list_names_every_registered_model_and_its_weights(cache):
    proc = _cli("models", "list", cache=cache)
    assert proc.returncode == 0, proc.stderr
    names = {line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip()}
    assert set(REGISTRY) <= names
    for name, spec in REGISTRY.items():
        line = next(x for x in proc.stdout.splitlines() if x.split()[:1] == [name])
        built_in = " ".join(f"x{s}" for s in _builtin_scales(name))
        if not spec.needs_weights:
            assert "(none needed)" in line
        elif built_in:
            assert f"  {built_in}  " in line, line

    proc = _cli("models", "list", "--json", cache=cache)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert list(rows) == list(REGISTRY)  # registry order
    for name, spec in REGISTRY.items():
        row = rows[name]
        assert row["builtin"] == _builtin_scales(name)
        assert row["cached"] == []  # empty cache
        assert row["scales"] == list(spec.scales) and row["licence"] == spec.licence
        assert row["input"] in {"luma", "RGB", "all planes"} or "channels" in row["input"]
        assert row["speed"] == spec.speed
        if row["builtin"]:
            assert row["parameters_from"] == "built-in weights"
            assert all(row["parameters"][str(s)] for s in row["builtin"])


def test_info_shows_the_spec_the_weights_and_the_catalog(cache):
    catalog = load_catalog()
    for name in REGISTRY:
        info = manage.model_info(name)
        assert info["name"] == name
        assert [b["scale"] for b in info["builtin"]] == _builtin_scales(name)
        assert [e["id"] for e in info["catalog"]] == [e.id for e in catalog.for_model(name)]
        text = manage.format_info(info)
        assert text.startswith(f"{name}: ")
        for e in info["catalog"]:
            assert e["url"] in text and e["licence"] in text
        for b in info["builtin"]:
            metrics = b["metrics"]
            if isinstance(metrics.get("Set5"), dict) and "psnr" in metrics["Set5"]:
                assert f"Set5 {metrics['Set5']['psnr']:.2f} dB" in text

    code, out, _ = _invoke("models", "info", "espcn", "--json")
    assert code == 0 and json.loads(out)["name"] == "espcn"
    entry = catalog.entries[0]
    code, out, _ = _invoke("models", "info", entry.id)
    assert code == 0
    assert entry.url in out and entry.licence in out and "vsr models pull" in out


def test_unknown_names_exit_2_with_one_line(cache, tmp_path):
    cases = [
        ("models", "info", "nosuchnet"),
        ("models", "pull", "nosuchentry"),
        ("models", "import", str(tmp_path / "missing.safetensors")),
    ]
    for args in cases:
        code, _, err = _invoke(*args)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("vsr: error: "), err
    code, _, err = _invoke("models", "info", "nosuchnet")
    assert all(name in err for name in REGISTRY)  # the known names are listed


def _tiny_espcn(path: Path, scale: int = 3) -> Path:
    """Random-init ESPCN saved as bare safetensors: no metadata at all."""
    torch.manual_seed(0)
    module = ESPCN(scale, features=(8, 4))
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path


@pytest.mark.slow
def test_import_then_run(cache, tmp_path, clip_mp4):
    src = _tiny_espcn(tmp_path / "My ESPCN.safetensors")
    code, stdout, stderr = _invoke("models", "import", str(src), "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    dest = cache / "weights" / "My-ESPCN.safetensors"
    assert report["path"] == str(dest) and report["model"] == "espcn" and report["scale"] == 3
    with safe_open(str(dest), framework="pt") as f:
        meta = f.metadata()
    assert meta["arch"] == "espcn" and meta["scale"] == "3"
    card = json.loads(dest.with_suffix(".json").read_text())
    assert card["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert card["source_file"] == str(src.resolve())
    assert (card["model"], card["scale"], card["licence"]) == ("espcn", 3, "unknown")
    assert card["parameters"] == sum(v.numel() for v in ESPCN(3, features=(8, 4)).parameters())
    assert re.match(r"\d{4}-\d\d-\d\dT", card["imported"])

    rows = {r["name"]: r for r in manage.list_models()}
    assert rows["espcn"]["cached"] == ["My-ESPCN"]
    assert manage.model_info("My-ESPCN")["kind"] == "imported weights"

    out = tmp_path / "up.mp4"
    proc = _cli(
        "run", str(clip_mp4), "-m", "espcn", "-x", "3", "--weights", str(dest),
        "-o", str(out), "--json", cache=cache,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["frames_out"] > 0 and out.exists()


def test_import_options_and_refusals(cache, tmp_path):
    src = _tiny_espcn(tmp_path / "w.safetensors", scale=2)
    result = manage.import_weights(src, name="pinned", model="espcn", scale=2, licence="CC0")
    assert (result.model, result.scale, result.card["licence"]) == ("espcn", 2, "CC0")

    code, _, err = _invoke("models", "import", str(src), "--name", "pinned")
    assert code == 2 and "--overwrite" in err  # never replaced silently
    code, _, err = _invoke("models", "import", str(src), "-m", "espcn", "-x", "3", "--name", "x3")
    assert code == 2 and "x2" in err, err  # the weights say x2
    code, _, err = _invoke("models", "import", str(src), "-m", "nosuchnet")
    assert code == 2 and "unknown model" in err
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not weights")
    code, _, err = _invoke("models", "import", str(junk))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in (cache / "weights").iterdir()) == [
        "pinned.json",
        "pinned.safetensors",
    ]


# ----------------------------------------------------------------------------------------
# The catalog data file
# ----------------------------------------------------------------------------------------


def test_catalog_file_is_valid():
    catalog = load_catalog(CATALOG_PATH)
    assert catalog.entries
    for e in catalog.entries:
        assert e.url.startswith("https://"), e.id
        assert e.source.strip() and e.licence.strip(), e.id
        assert e.model in REGISTRY or e.model in catalog.future_models, (e.id, e.model)
        if e.model in REGISTRY:
            assert e.scale in REGISTRY[e.model].scales, e.id
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.id
        assert e.sha256_prefix is None or re.fullmatch(r"[0-9a-f]{8,64}", e.sha256_prefix)
    ids = catalog.ids()
    for wanted in ("realesrgan-x4plus", "edsr-baseline-x2", "opencv-espcn-x3"):
        assert wanted in ids
    # the EDSR-PyTorch names carry their torch.hub hash, read from the URL
    assert catalog.get("edsr-baseline-x2").sha256_prefix == "1bc95232"


@pytest.mark.parametrize(
    "change, message",
    [
        (('licence = "test"\n', ""), "lacks licence"),
        (("scale = 3", 'scale = "3"'), "scale"),
        (("https://example.org/w.pth", "ftp://example.org/w.pth"), "url"),
        (('notes = ""', 'sha256 = "abc"'), "sha256"),
        (('notes = ""', 'sha265 = "' + "0" * 64 + '"'), "unknown keys"),
        (("w.pth", "w-deadbeef.pth"), ""),  # valid: a hash in the name is allowed
    ],
)
def test_catalog_validation(change, message):
    text = (
        "[[weights]]\n"
        'id = "t"\nmodel = "espcn"\nscale = 3\nurl = "https://example.org/w.pth"\n'
        'source = "s"\nlicence = "test"\nnotes = ""\n'
    ).replace(*change)
    if not message:
        assert parse_catalog(text).entries[0].sha256_prefix == "deadbeef"
        return
    with pytest.raises(CatalogError, match=message):
        parse_catalog(text)


def test_catalog_ids_are_unique():
    entry = (
        "[[weights]]\n"
        'id = "t"\nmodel = "espcn"\nscale = 3\nurl = "https://example.org/{}.pth"\n'
        'source = "s"\nlicence = "test"\n'
    )
    with pytest.raises(CatalogError, match="same id"):
        parse_catalog(entry.format("a") + entry.format("b"))
