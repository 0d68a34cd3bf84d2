"""Safe file writing for caches and run folders: atomic replaces and inter-process locks.

A reader never sees a half-written file: each write goes to a temporary file in the same folder, which is then
renamed over the target (an atomic step on one file system). A lock file serialises writers, so two students
(or two processes) working on the same folder at once cannot mix their results."""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from faceattr.errors import DiskFullError, FaceattrError

try:
    import fcntl
except ImportError:  # Windows: LockFileEx through ctypes (see windows_lock)
    fcntl = None


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary_path)`, then rename the temporary file onto `path`; on any failure `path` is untouched
    and the temporary file is gone. A full disk is a one-line `DiskFullError`."""
    path = Path(path)
    with full_disk_as_error(path.parent):
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


def temporary_target(candidate: Path) -> Path | None:
    """The file an `atomic_write` temporary (`.STEM.RANDOM.SUFFIX`) is written for; None for any other file."""
    suffix = candidate.suffix
    core = candidate.name[1:len(candidate.name) - len(suffix)]
    if not candidate.name.startswith(".") or "." not in core:
        return None
    stem, random_part = core.rsplit(".", 1)
    if len(random_part) != 8 or not stem:  # tempfile's names carry 8 random characters
        return None
    return candidate.with_name(stem + ("" if suffix == ".tmp" else suffix))


def temporaries_of(path: Path) -> list[Path]:
    """The `atomic_write` temporaries of `path` in its folder: one being written, or left by a killed writer (the
    caller holds `path`'s lock to tell them apart)."""
    pattern = f".{glob.escape(path.stem)}.*{path.suffix or '.tmp'}"
    return sorted(candidate for candidate in path.parent.glob(pattern) if temporary_target(candidate) == path)


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # no space left; the user's disk quota is used up


@contextmanager
def full_disk_as_error(folder: str | Path) -> Iterator[None]:
    """Turn a full disk (or quota) met in the block into a `DiskFullError` that names `folder` and what to do; any
    other error passes unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as error:
        if error.errno not in DISK_FULL_ERRNOS:
            raise
        full = DiskFullError(f"no space left on the disk holding {folder} ({error.strerror}): free some space "
                             "(`faceattr cache --clear` deletes the kit's cache), or write somewhere else (--out "
                             "for a run, FACEATTR_CACHE_DIR for the cache).")
        full.errno, full.strerror, full.filename = error.errno, error.strerror, error.filename
        raise full from None


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically."""
    return atomic_write(path, lambda temporary: temporary.write_text(text))


def write_json(path: str | Path, payload: dict) -> None:
    """Write a dict as indented JSON (paths and other objects as strings), in place."""
    Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")


def atomic_write_json(path: str | Path, payload: dict) -> Path:
    """Write a dict as indented JSON, atomically."""
    return atomic_write(path, lambda temporary: write_json(temporary, payload))


def current_umask() -> int:
    """The process's umask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def locked(lock_path: str | Path, blocking: bool = True, shared: bool = False) -> Iterator[bool]:
    """Hold a lock on `lock_path` for the block: exclusive, or with `shared` one of any number of readers (an
    exclusive holder waits for them); yields False (without waiting) if `blocking` is False and another process
    holds it in a way that excludes this one. The lock is the operating system's (flock on Linux and macOS,
    LockFileEx on Windows), so it ends with the process that holds it, however that process ends.

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
        lock, unlock = (posix_lock, posix_unlock) if fcntl is not None else (windows_lock, windows_unlock)
        if not lock(stream.fileno(), shared, blocking):
            yield False
            return
        try:
            yield True
        finally:
            unlock(stream.fileno())


def posix_lock(descriptor: int, shared: bool, blocking: bool) -> bool:
    """Take flock's shared or exclusive lock on an open file; False when not `blocking` and another holds it."""
    try:
        fcntl.flock(descriptor, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def posix_unlock(descriptor: int) -> None:
    """Release flock's lock on an open file."""
    fcntl.flock(descriptor, fcntl.LOCK_UN)


LOCKFILE_FAIL_IMMEDIATELY, LOCKFILE_EXCLUSIVE_LOCK, ERROR_LOCK_VIOLATION = 0x1, 0x2, 33  # from Windows' headers


def windows_lock(descriptor: int, shared: bool, blocking: bool) -> bool:
    """Take LockFileEx's shared or exclusive lock on the first byte of an open file (a read-only handle may lock
    either way); False when not `blocking` and another holds it."""
    import ctypes

    flags = (0 if shared else LOCKFILE_EXCLUSIVE_LOCK) | (0 if blocking else LOCKFILE_FAIL_IMMEDIATELY)
    if windows_call("LockFileEx", descriptor, flags, 0, 1, 0):
        return True
    error = ctypes.get_last_error()
    if error == ERROR_LOCK_VIOLATION and not blocking:
        return False
    raise ctypes.WinError(error)


def windows_unlock(descriptor: int) -> None:
    """Release LockFileEx's lock on the first byte of an open file."""
    import ctypes

    if not windows_call("UnlockFileEx", descriptor, 0, 1, 0):
        raise ctypes.WinError(ctypes.get_last_error())


def windows_call(name: str, descriptor: int, *arguments: int) -> bool:
    """Call kernel32's LockFileEx or UnlockFileEx on the Windows handle of `descriptor`, with an OVERLAPPED
    structure at offset 0; True when it succeeded."""
    import ctypes
    import msvcrt
    from ctypes import wintypes

    class Overlapped(ctypes.Structure):
        _fields_ = [("internal", ctypes.c_size_t), ("internal_high", ctypes.c_size_t), ("offset", wintypes.DWORD),
                    ("offset_high", wintypes.DWORD), ("event", wintypes.HANDLE)]

    function = getattr(ctypes.WinDLL("kernel32", use_last_error=True), name)
    function.argtypes = [wintypes.HANDLE] + [wintypes.DWORD] * len(arguments) + [ctypes.POINTER(Overlapped)]
    function.restype = wintypes.BOOL
    return bool(function(msvcrt.get_osfhandle(descriptor), *arguments, ctypes.byref(Overlapped())))


def shared_lock(lock_path: str | Path, blocking: bool = True) -> AbstractContextManager[bool]:
    """`locked(..., shared=True)`: a reader's lock."""
    return locked(lock_path, blocking, shared=True)


class FileTooLarge(ValueError):
    """A file over the size its reader accepts (see `file_digest`)."""


def file_digest(path: str | Path, make_hash: Callable[[], object] = hashlib.sha256, limit: int | None = None) -> str:
    """The hex digest of a file's bytes, read as a stream (never the whole file at once); a file longer than
    `limit` bytes raises `FileTooLarge` after reading at most limit + 1 bytes."""
    digest, read = make_hash(), 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20 if limit is None else min(1 << 20, limit + 1 - read)):
            digest.update(chunk)
            read += len(chunk)
            if limit is not None and read > limit:
                raise FileTooLarge(f"{path} is larger than {limit:,} bytes")
    return digest.hexdigest()
