"""Shared fixtures: tiny media clips generated once per session with PyAV."""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import pytest

from vsr.backends.opencv_backend import OPENCV_PB_REQUIREMENT, opencv_pb_problem
from vsr.media.frame import ColorInfo
from vsr.media.sample import make_corrupt_file, make_sample_clip, truncate_file

REPO_ROOT = Path(__file__).resolve().parent.parent

# Small on purpose: the suite must stay fast on a 2-core machine.
W, H = 128, 96

#: Set (to anything) where the cv2.dnn_superres comparisons must run: CI sets it, and its
#: pinned OpenCV (constraints.txt) reads .pb graphs, so a missing importer fails there.
REQUIRE_OPENCV_PB = "VSR_REQUIRE_OPENCV_PB"


def pytest_configure(config: pytest.Config) -> None:
    """Converted networks (``--backend auto``/``openvino``) are cached in a folder of this
    session's, not in the user's ``~/.cache/vsr``; tests that need their own set
    ``VSR_CACHE`` themselves."""
    if not os.environ.get("VSR_CACHE"):
        os.environ["VSR_CACHE"] = tempfile.mkdtemp(prefix="vsr-test-cache-")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``opencv_pb`` compare with cv2.dnn_superres running a ``.pb`` graph:
    they need an OpenCV with the TensorFlow importer (below 5.1, contrib build). Where it is
    absent they are skipped with the reason, or fail when ``VSR_REQUIRE_OPENCV_PB`` is set."""
    if item.get_closest_marker("opencv_pb") is None:
        return
    problem = opencv_pb_problem()
    if problem is None:
        return
    reason = (
        f"cv2.dnn_superres comparison not run: {problem} "
        f"(install '{OPENCV_PB_REQUIREMENT}'; constraints.txt pins one)"
    )
    if os.environ.get(REQUIRE_OPENCV_PB):
        pytest.fail(f"{REQUIRE_OPENCV_PB} is set but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def shared_data() -> Path | None:
    """``../shared/data`` next to the repository (third-party data), or ``None``."""
    path = REPO_ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def clip_mp4(media_dir: Path) -> Path:
    """H.264 (with B-frames) + AAC stereo in MP4, 24 frames at 24 fps."""
    return make_sample_clip(media_dir / "basic.mp4", width=W, height=H, frames=24)


@pytest.fixture(scope="session")
def clip_no_audio(media_dir: Path) -> Path:
    return make_sample_clip(media_dir / "noaudio.mp4", width=W, height=H, frames=12, audio=False)


@pytest.fixture(scope="session")
def clip_two_audio(media_dir: Path) -> Path:
    """MP4 with two AAC tracks (eng stereo, fra mono)."""
    return make_sample_clip(
        media_dir / "twoaudio.mp4", width=W, height=H, frames=12, audio_tracks=2
    )


@pytest.fixture(scope="session")
def clip_mkv_subs(media_dir: Path) -> Path:
    """Matroska with two audio tracks and a SubRip subtitle track."""
    return make_sample_clip(
        media_dir / "subs.mkv", width=W, height=H, frames=30, audio_tracks=2, subtitles=True
    )


@pytest.fixture(scope="session")
def clip_odd(media_dir: Path) -> Path:
    """321x241 4:2:0 (VP9 in Matroska: x264 refuses odd sizes)."""
    return make_sample_clip(media_dir / "odd.mkv", width=321, height=241, frames=10)


@pytest.fixture(scope="session")
def clip_10bit(media_dir: Path) -> Path:
    """yuv420p10le H.264 (High 10) in MP4: this PyAV's libx264 takes 10-bit."""
    return make_sample_clip(
        media_dir / "tenbit.mp4", width=W, height=H, frames=12, pix_fmt="yuv420p10le"
    )


@pytest.fixture(scope="session")
def clip_rotated(media_dir: Path) -> Path:
    return make_sample_clip(media_dir / "rot90.mp4", width=W, height=H, frames=12, rotation=90)


@pytest.fixture(scope="session")
def clip_bt709_full(media_dir: Path) -> Path:
    color = ColorInfo(matrix="bt709", range="pc", primaries="bt709", transfer="bt709")
    return make_sample_clip(media_dir / "bt709pc.mp4", width=W, height=H, frames=12, color=color)


@pytest.fixture(scope="session")
def clip_webm(media_dir: Path) -> Path:
    """VP9 + Opus in WebM."""
    return make_sample_clip(media_dir / "clip.webm", width=W, height=H, frames=24)


@pytest.fixture(scope="session")
def clip_mov(media_dir: Path) -> Path:
    return make_sample_clip(media_dir / "clip.mov", width=W, height=H, frames=12)


@pytest.fixture(scope="session")
def clip_vfr(media_dir: Path) -> Path:
    """Variable frame rate: time base 1/48, durations alternating 1 and 2 ticks."""
    return make_sample_clip(
        media_dir / "vfr.mp4", width=W, height=H, frames=24, rate=Fraction(24), vfr=True
    )


@pytest.fixture(scope="session")
def clip_truncated(media_dir: Path) -> Path:
    """The first half of a 40-frame Matroska clip (Matroska stays readable when cut)."""
    full = make_sample_clip(media_dir / "full40.mkv", width=W, height=H, frames=40)
    return truncate_file(full, media_dir / "truncated.mkv", 0.5)


@pytest.fixture(scope="session")
def clip_corrupt(media_dir: Path) -> Path:
    return make_corrupt_file(media_dir / "corrupt.mp4")


@pytest.fixture
def ov_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own conversion cache (``VSR_CACHE``); returns its openvino folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("VSR_CACHE", str(cache))
    return cache / "openvino"


@pytest.fixture
def torch_threads():
    """Restore torch's thread count after the test (backends set it)."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
