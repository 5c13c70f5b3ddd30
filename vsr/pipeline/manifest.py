"""The work directory of ``vsr run --resume`` and its manifest: which segments are done.

``manifest.json`` records the input's identity (path, size, mtime), the output fingerprint
of the segments (``params_hash``), the segment container and every finished segment;
:func:`load_manifest` keeps what still matches and clears the rest. The directory is
locked (``flock`` on ``.lock``) while a run uses it.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vsr.config import DEVICE_FIELDS, VIDEO_FIELDS, RunConfig, config_values, output_fingerprint
from vsr.errors import UsageError
from vsr.files import FileLock, atomic_write
from vsr.media.codecs import container_holds

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "Manifest",
    "Segment",
    "clear_work_dir",
    "default_work_dir",
    "input_identity",
    "load_manifest",
    "lock_work_dir",
    "params_hash",
    "save_manifest",
    "segment_suffix",
]

log = logging.getLogger("vsr")

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
LOCK_NAME = ".lock"


@dataclass
class Segment:
    index: int
    file: str
    first_frame: int
    last_frame: int
    first_pts: int | None
    last_pts: int | None
    frames: int
    size: int
    offset: int  # subtracted from every pts in the file (source time base); added back


@dataclass
class Manifest:
    input: dict[str, Any]
    params: str
    container: str
    segments: list[Segment] = field(default_factory=list)
    complete: bool = False  # every frame of the input is in a segment

    def to_json(self) -> str:
        data = {
            "version": MANIFEST_VERSION,
            "input": self.input,
            "params": self.params,
            "container": self.container,
            "complete": self.complete,
            "segments": [s.__dict__ for s in self.segments],
        }
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"manifest version {data.get('version')!r}")
        names = {f.name for f in fields(Segment)}
        segments = [Segment(**{k: s[k] for k in names}) for s in data["segments"]]
        return cls(
            input=dict(data["input"]),
            params=str(data["params"]),
            container=str(data["container"]),
            segments=segments,
            complete=bool(data.get("complete", False)),
        )

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments)


# -- identity ------------------------------------------------------------------------------


def default_work_dir(output: Path) -> Path:
    """The work directory for ``output``: its hidden sibling ``.<name>.vsr-parts``."""
    return output.with_name(f".{output.name}.vsr-parts")


def input_identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def params_hash(cfg: RunConfig, container: str) -> str:
    """The fingerprint of what the segments hold: the video fields, the device fields
    (segments from different devices must not be mixed) and the segment container. Audio
    is left out: only the join uses it."""
    return output_fingerprint(config_values(cfg), VIDEO_FIELDS + DEVICE_FIELDS, container=container)


def segment_suffix(output: Path, codec: str) -> str:
    """The segments' container: the output's when it is MP4/MOV, else MP4 (or MOV) when
    it holds ``codec``, else the output's own."""
    own = output.suffix.lower() or ".mp4"
    if own in (".mp4", ".mov"):
        return own
    for suffix, fmt in ((".mp4", "mp4"), (".mov", "mov")):
        if container_holds(fmt, codec):
            return suffix
    return own


# -- files ---------------------------------------------------------------------------------


def save_manifest(work: Path, manifest: Manifest) -> None:
    atomic_write(work / MANIFEST_NAME, manifest.to_json())


def clear_work_dir(work: Path) -> None:
    for p in work.iterdir():
        if p.name == LOCK_NAME:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def load_manifest(work: Path, identity: dict[str, Any], params: str, container: str) -> Manifest:
    """The manifest to continue: the recorded one when it matches (its segments checked,
    anything unrecorded deleted), else a new empty one (the work directory emptied)."""
    fresh = Manifest(input=identity, params=params, container=container)
    path = work / MANIFEST_NAME
    if not path.exists():
        if any(p.name != LOCK_NAME for p in work.iterdir()):
            log.info("%s: no manifest; removing leftovers", work)
        clear_work_dir(work)
        return fresh
    try:
        old = Manifest.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable manifest (%s); starting over", work, exc)
        clear_work_dir(work)
        return fresh
    if old.input != identity or old.params != params or old.container != container:
        what = "the input" if old.input != identity else "the parameters"
        log.warning(
            "%s: the manifest was written for other settings (%s changed); "
            "discarding its segments and starting over",
            work,
            what,
        )
        clear_work_dir(work)
        return fresh
    kept: list[Segment] = []
    next_frame = 0
    for seg in old.segments:
        f = work / seg.file
        ok = (
            seg.index == len(kept)
            and seg.first_frame == next_frame
            and seg.frames == seg.last_frame - seg.first_frame + 1 > 0
            and Path(seg.file).name == seg.file
            and f.is_file()
            and f.stat().st_size == seg.size
        )
        if not ok:
            log.warning("%s: segment %d is missing or damaged; redoing from it", work, seg.index)
            break
        kept.append(seg)
        next_frame = seg.last_frame + 1
    complete = old.complete and len(kept) == len(old.segments)
    manifest = Manifest(identity, params, container, kept, complete)
    names = {s.file for s in kept} | {MANIFEST_NAME, LOCK_NAME}
    for p in work.iterdir():
        if p.name not in names:
            log.info("%s: removing %s (not in the manifest)", work, p.name)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    if len(kept) != len(old.segments) or complete != old.complete:
        save_manifest(work, manifest)
    return manifest


def lock_work_dir(work: Path) -> FileLock:
    """An exclusive lock on ``work`` (two runs must not share a work directory)."""
    return FileLock(
        work / LOCK_NAME,
        blocking=False,
        busy=lambda: UsageError(
            f"{work} is in use by another vsr run",
            hint="wait for it to finish, or give each run its own output",
        ),
    )
