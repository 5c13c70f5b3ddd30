"""Batch inputs: expand files, folders, globs and list files into input files, and map
each to its output under DIR (mirroring the input tree, never colliding, never outside).

- A folder X is searched recursively for video files (by extension; hidden files and
  folders are skipped, symlinked folders are not followed); X/a/b.mp4 -> DIR/a/b.mp4.
- A file (given, listed, or a symlink) -> DIR/<its name as given>, whatever its extension.
- A glob (``videos/**/*.mp4``) -> its matches, mirrored below the glob's fixed prefix.
- A list file (``@list.txt``, or any existing ``.txt`` file): one path, folder or glob a
  line, relative to the list's folder; blank lines and ``#`` comments are skipped.
- DIR itself (and everything under it) is never an input.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vsr.errors import InputNotFoundError, UsageError

__all__ = [
    "VIDEO_SUFFIXES",
    "Refused",
    "Source",
    "assign_outputs",
    "expand_inputs",
    "inside",
    "suffixed",
]

#: What a folder or glob search takes (case-insensitive). Files named explicitly are taken
#: whatever their extension.
VIDEO_SUFFIXES = frozenset(
    {
        ".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".ts", ".mts", ".m2ts",
        ".flv", ".wmv", ".mpg", ".mpeg", ".3gp", ".ogv", ".y4m",
    }
)  # fmt: skip
_MAGIC = set("*?[")


@dataclass(frozen=True)
class Source:
    """One input file: ``key`` its resolved path, ``rel`` its place under DIR."""

    key: str
    rel: PurePosixPath
    given: str  # how it was named (an argument, a list line, a folder + relative path)


@dataclass(frozen=True)
class Refused:
    """An input that will not be processed, and why (one line)."""

    input: str
    reason: str


def inside(root: Path, path: Path) -> bool:
    """Whether ``path``, with every symlink and ``..`` resolved (also in parts that do not
    exist yet), is ``root`` or below it. ``root`` must be resolved already."""
    real = Path(os.path.realpath(path))
    return real == root or real.is_relative_to(root)


def _has_magic(text: str) -> bool:
    return any(c in _MAGIC for c in text)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _matches(rel: PurePosixPath, patterns: Iterable[str]) -> bool:
    text = rel.as_posix()
    return any(fnmatch.fnmatchcase(text, p) or fnmatch.fnmatchcase(rel.name, p) for p in patterns)


def _walk(root: Path, out_root: Path) -> Iterator[tuple[Path, PurePosixPath]]:
    """Video files below ``root`` (not following symlinked folders, skipping hidden names
    and ``out_root``), with their paths relative to ``root``."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not _hidden(d) and not inside(out_root, here / d)
        )
        for name in sorted(filenames):
            if _hidden(name) or Path(name).suffix.lower() not in VIDEO_SUFFIXES:
                continue
            path = here / name
            yield path, PurePosixPath((path.relative_to(root)).as_posix())


def _glob_base(pattern: str) -> Path:
    """The leading folders of ``pattern`` without wildcards (``.`` if none)."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if _has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _read_list(path: Path) -> list[tuple[str, str]]:
    """(entry, where) for each line of a list file, relative entries made absolute."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputNotFoundError(f"list file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read list file {path}: {exc}") from None
    base = path.resolve().parent
    entries: list[tuple[str, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        full = os.path.expanduser(entry)
        if not os.path.isabs(full):
            full = str(base / full)
        entries.append((full, f"{path}:{lineno}"))
    return entries


def _is_list_file(arg: str) -> bool:
    return arg.startswith("@") or (arg.lower().endswith(".txt") and os.path.isfile(arg))


def expand_inputs(
    inputs: Iterable[str],
    out_dir: Path,
    *,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> tuple[list[Source], list[Refused]]:
    """Every input file, once (by resolved path, first naming wins), in the order given.

    Raises InputNotFoundError for a path that does not exist (an argument or a list
    line), UsageError for a glob that matches nothing or an unreadable list file.
    Files under ``out_dir`` are left out (a folder search) or refused (named explicitly).
    ``include``/``exclude`` globs match a file's path relative to its folder input, or
    its name.
    """
    out_root = Path(os.path.realpath(out_dir))
    include, exclude = tuple(include), tuple(exclude)
    sources: list[Source] = []
    refused: list[Refused] = []
    seen: set[str] = set()

    def add(path: Path, rel: PurePosixPath, given: str, *, explicit: bool) -> None:
        if include and not _matches(rel, include):
            return
        if exclude and _matches(rel, exclude):
            return
        real = Path(os.path.realpath(path))
        if inside(out_root, real):
            if explicit:
                refused.append(Refused(given, "the input is inside the output folder"))
            return
        if not real.is_file():
            refused.append(Refused(given, "not a regular file"))
            return
        key = str(real)
        if key in seen:
            return
        seen.add(key)
        sources.append(Source(key=key, rel=rel, given=given))

    def folder(root: Path, prefix: PurePosixPath, given: str) -> None:
        root = Path(os.path.realpath(root))
        if inside(out_root, root):
            return  # the output folder (or below it) named as an input
        for path, rel in _walk(root, out_root):
            add(path, prefix / rel, f"{given}/{rel}" if given else str(rel), explicit=False)

    def one(entry: str, where: str) -> None:
        path = Path(os.path.expanduser(entry))
        label = entry if where == entry else f"{entry} ({where})"
        if os.path.isdir(path):
            folder(path, PurePosixPath(), entry.rstrip("/") or "/")
        elif os.path.lexists(path) and not os.path.exists(path):
            refused.append(Refused(label, "broken symbolic link"))
        elif os.path.exists(path):
            add(path, PurePosixPath(path.name), label, explicit=True)
        elif _has_magic(entry):
            matches = sorted(glob.glob(os.path.expanduser(entry), recursive=True))
            if not matches:
                raise UsageError(f"no files match {label}")
            base = Path(os.path.abspath(_glob_base(os.path.expanduser(entry))))
            for match in matches:
                m = Path(os.path.abspath(match))
                try:
                    rel = PurePosixPath(m.relative_to(base).as_posix())
                except ValueError:
                    rel = PurePosixPath(m.name)
                if m.is_dir():
                    folder(m, rel, match)
                elif Path(match).suffix.lower() in VIDEO_SUFFIXES:
                    add(m, rel, match, explicit=False)
        else:
            raise InputNotFoundError(f"input not found: {label}")

    for arg in inputs:
        if _is_list_file(arg):
            list_path = Path(os.path.expanduser(arg[1:] if arg.startswith("@") else arg))
            for entry, where in _read_list(list_path):
                if _is_list_file(entry):
                    raise UsageError(f"a list file cannot name another list file: {where}")
                one(entry, where)
        else:
            one(arg, arg)
    return sources, refused


def suffixed(rel: PurePosixPath, key: str, n: int = 0) -> PurePosixPath:
    """``a/clip.mp4`` -> ``a/clip-<8 hex of the key's hash>.mp4`` (``-<n>`` more if needed)."""
    tag = hashlib.sha256(key.encode()).hexdigest()[:8]
    more = f"-{n}" if n else ""
    suffix = rel.suffix or ".mp4"
    stem = rel.name[: -len(rel.suffix)] if rel.suffix else rel.name
    return rel.with_name(f"{stem}-{tag}{more}{suffix}")


def assign_outputs(
    sources: list[Source],
    out_dir: Path,
    recorded: Mapping[str, str],
) -> tuple[dict[str, str], list[Refused]]:
    """The output path of each source under ``out_dir``: its mirrored path, or, when that
    is taken (by another source of this run or by another row of the ledger,
    ``recorded``: key -> output), the same with a suffix made from the input's hash.
    A source keeps the output the ledger recorded for it when that is one of its two
    names, so adding inputs never renames earlier outputs. Deterministic.

    A path that would land outside ``out_dir`` once symlinks are resolved is refused.
    """
    root = Path(os.path.realpath(out_dir))
    taken: dict[str, str] = {out: key for key, out in recorded.items() if out}
    chosen: dict[str, str] = {}
    refused: list[Refused] = []

    def plain(src: Source) -> PurePosixPath:
        return src.rel if src.rel.suffix else src.rel.with_name(src.rel.name + ".mp4")

    def candidates(src: Source) -> list[str]:
        return [str(root / plain(src)), str(root / suffixed(plain(src), src.key))]

    def safe(src: Source, out: str) -> bool:
        rel = Path(out).relative_to(root)
        if ".." in rel.parts or rel.is_absolute() or not inside(root, Path(out).parent):
            refused.append(
                Refused(src.given, f"its output {out} would land outside {root} (symlink)")
            )
            return False
        if os.path.islink(out):
            refused.append(Refused(src.given, f"its output {out} is a symbolic link"))
            return False
        return True

    # Keep what the ledger recorded first, then name the others in a fixed order.
    later: list[Source] = []
    for src in sources:
        old = recorded.get(src.key)
        if old and old in candidates(src) and taken.get(old) == src.key:
            chosen[src.key] = old
        else:
            later.append(src)
    claimed = {out: key for key, out in chosen.items()}
    for src in sorted(later, key=lambda s: s.key):
        names = candidates(src)
        n = 1
        while True:
            free = [c for c in names if taken.get(c, src.key) == src.key and c not in claimed]
            if free:
                break
            names = [str(root / suffixed(plain(src), src.key, n))]
            n += 1
        chosen[src.key] = free[0]
        claimed[free[0]] = src.key
    result: dict[str, str] = {}
    for src in sources:
        out = chosen[src.key]
        if safe(src, out):
            result[src.key] = out
    return result, refused
