"""Safe file writing for caches and run folders: atomic replaces and inter-process locks.

A reader never sees a half-written file: each write goes to a temporary file in the same folder, which is then
renamed over the target (an atomic step on one file system). A lock file serialises writers, so two students
(or two processes) working on the same folder at once cannot mix their results."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from faceattr.errors import FaceattrError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; writes stay atomic
    fcntl = None


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary_path)`, then rename the temporary file onto `path`; on any failure `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically."""
    return atomic_write(path, lambda temporary: temporary.write_text(text))


def atomic_write_json(path: str | Path, payload: dict) -> Path:
    """Write a dict as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def current_umask() -> int:
    """The process's umask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def locked(lock_path: str | Path, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on `lock_path` for the block; yields False (without waiting) if `blocking` is False
    and another process holds it.

    The lock file is opened read-only (a lock needs no write access), so a lock file another user made first in a
    shared folder still works; one this user cannot even read is a one-line FaceattrError."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o666)
    except PermissionError:
        raise FaceattrError(f"the lock file {lock_path} belongs to another user and cannot be opened; ask them to "
                            "remove it, or use a folder of your own.") from None
    with os.fdopen(descriptor) as stream:
        if fcntl is None:
            yield True
            return
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(stream.fileno(), fcntl.LOCK_UN)
