"""Write files and folders under a temporary name, then rename, so an interrupted run
never leaves half an output behind.

Temporary names carry the id of the process that made them (``.NAME.<pid>.<random>.tmp``,
``.NAME.<pid>.<random>.old``). A folder is replaced by two renames (the old one aside,
the new one in place); a run killed between them leaves no folder at the path, only the
``.old`` one. ``recover`` undoes that (the old folder goes back) and removes the
temporaries of processes that no longer run (folders and files); ``atomic_dir`` calls it
before each write, and readers may call it before reading. ``atomic_path`` (files) does
not, as it may write many small files into one folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

#: temporaries without a process id (older versions) count as stale after this many seconds
STALE_AFTER_S = 3600.0


def _prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _is_stale(entry: Path, name: str) -> bool:
    rest = entry.name[len(name) + 2:]          # after ".NAME."
    pid = rest.split(".", 1)[0]
    if pid.isdigit():
        return not _alive(int(pid))
    try:
        return time.time() - entry.lstat().st_mtime > STALE_AFTER_S
    except OSError:
        return False


def recover(path: str | os.PathLike) -> None:
    """Finish what an interrupted write to ``path`` left: when ``path`` is missing and a
    folder set aside by a replacement is there, it goes back; temporaries of processes
    that no longer run are removed."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return
    start = f".{path.name}."
    try:
        entries = [e for e in parent.iterdir() if e.name.startswith(start)
                   and (e.name.endswith(".old") or ".tmp" in e.name[len(start):])]
    except OSError:
        return
    stale = [e for e in entries if _is_stale(e, path.name)]
    olds = sorted((e for e in stale if e.name.endswith(".old")), key=lambda e: e.lstat().st_mtime)
    if olds and not os.path.lexists(path):
        try:
            os.replace(olds[-1], path)          # roll back: the model before the interrupted save
            stale.remove(olds[-1])
        except OSError:
            pass
    for e in stale:
        if e.is_dir() and not e.is_symlink():
            shutil.rmtree(e, ignore_errors=True)
        else:
            try:
                e.unlink()
            except OSError:
                pass


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".old", dir=path.parent))
            old.rmdir()
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
