"""The kit's cache folder: which folder it is (this user's own, else a private temporary one), its subfolders and the
names of the files in them, and listing and clearing it (`faceattr cache`). Importing it never imports TensorFlow.

The cache holds three kinds of entry, each rebuilt when needed: `extracted/KEY` (a UTKFace archive, extracted, with
KEY.json naming the archive and KEY.lock beside it), `scans/KEY.json` (a folder's scan result) and
`decoded/KEY-SIZEpx.npy` (a decoded-image store, faceattr.store, with its .lock beside it)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np

from faceattr.files import locked, temporary_target

EXTRACTED, SCANS, DECODED = "extracted", "scans", "decoded"
CACHE_SUBFOLDERS = (EXTRACTED, SCANS, DECODED)  # the cache's parts: tarball extractions, scans, image stores
FALLBACK_PREFIX = "faceattr-cache-"  # a private temporary cache folder's name starts so (see private_fallback_dir)
STAGING_SUFFIX = ".partial"  # an extraction being written (or left by a killed one): KEY.RANDOM.partial
_chosen_cache_dirs: dict[Path, Path] = {}  # wanted cache folder -> the one this process uses (usable_cache_dir)


def default_cache_dir() -> Path:
    """Return the kit's cache folder (FACEATTR_CACHE_DIR, else ~/.cache/faceattr)."""
    configured = os.environ.get("FACEATTR_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "faceattr"


def folder_problem(path: Path) -> str | None:
    """Why `path` is no safe cache folder (another user owns it, or others can write in it); None when it is one.

    A file someone else can plant in the cache is a file this user's runs would trust. On Windows, where folders
    carry ACLs rather than modes, every folder passes."""
    if not hasattr(os, "getuid"):
        return None
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a folder"
    if info.st_uid != os.getuid():
        return "it belongs to another user"
    if info.st_mode & 0o022:
        return "other users can write in it"
    return None


def private_folder_problem(path: Path) -> str | None:
    """Make `path` (mode 700 when new) and say why it cannot be this user's cache, or None when it can: it must be
    writable, and neither it nor a subfolder may be another user's or writable by others."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in CACHE_SUBFOLDERS:  # made here, private, before a lock or a write makes them with the umask's mode
            (path / name).mkdir(mode=0o700, exist_ok=True)
        for folder in (path, *(child for child in path.iterdir() if child.is_dir())):
            problem = folder_problem(folder)
            if problem:
                return f"{problem}{'' if folder == path else f' ({folder.name}/)'}, so others could plant files "\
                       "your runs would trust"
        with tempfile.TemporaryFile(dir=path):
            return None
    except OSError as error:
        return f"it cannot be written ({error.strerror or error})"


def private_fallback_dir() -> Path:
    """A private temporary cache folder: an earlier one of this user's (mode 700, theirs), else a fresh one made by
    `tempfile.mkdtemp`, never a predictable path someone else could have made first."""
    for candidate in sorted(Path(tempfile.gettempdir()).glob(f"{FALLBACK_PREFIX}*")):
        try:  # a link there is someone else's pointer into one of this user's private folders
            private = not candidate.is_symlink() and not candidate.stat().st_mode & 0o077
            if private and folder_problem(candidate) is None:
                return candidate
        except OSError:
            continue
    return Path(tempfile.mkdtemp(prefix=FALLBACK_PREFIX))


def usable_cache_dir() -> Path:
    """The cache folder when it is this user's own and writable, else a private temporary one (with a note on
    stderr saying why); chosen once per process and wanted folder, so one run never spreads over two caches."""
    wanted = default_cache_dir()
    if wanted in _chosen_cache_dirs:
        return _chosen_cache_dirs[wanted]
    problem = private_folder_problem(wanted)
    chosen = wanted if problem is None else private_fallback_dir()
    if problem is not None:
        fix = f" (`chmod -R go-w {wanted}` makes it private)" if "other users can write" in problem else ""
        print(f"note: the cache folder {wanted} is not used: {problem}{fix}. Using the private folder {chosen} "
              "instead; set FACEATTR_CACHE_DIR to a folder only you can write (for a class: one folder per student) "
              "to keep the cache.", file=sys.stderr)
    _chosen_cache_dirs[wanted] = chosen
    return chosen


def subfolder(name: str, cache_dir: Path | None = None) -> Path:
    """One of the cache's CACHE_SUBFOLDERS, in `cache_dir` (default: the folder the kit uses, usable_cache_dir)."""
    if name not in CACHE_SUBFOLDERS:
        raise ValueError(f"{name!r} is not one of the cache's subfolders {CACHE_SUBFOLDERS}")
    return (cache_dir or usable_cache_dir()) / name


def lock_of(path: Path) -> Path:
    """The lock beside a cache entry (an extraction or a store): its writer holds it exclusively, its users shared."""
    return Path(f"{path}.lock")


def extraction_folder(key: str, cache_dir: Path | None = None) -> Path:
    """Where the archive with content key `key` is extracted."""
    return subfolder(EXTRACTED, cache_dir) / key


def extraction_sidecar(folder: Path) -> Path:
    """The JSON beside an extraction that names its archive (for `faceattr cache`)."""
    return Path(f"{folder}.json")


def staging_folder(folder: Path) -> Path:
    """A new, private folder beside `folder` to extract into before it is renamed into place."""
    return Path(tempfile.mkdtemp(prefix=f"{folder.name}.", suffix=STAGING_SUFFIX, dir=folder.parent))


def partial_extractions(folder: Path) -> list[Path]:
    """The staging folders of `folder`'s extraction: one being extracted now, or left by a killed extraction."""
    return sorted(folder.parent.glob(f"{folder.name}.*{STAGING_SUFFIX}"))


def is_extraction(folder: Path) -> bool:
    """True when `folder` is one of the cache's archive extractions (it has the sidecar and the lock the kit makes
    beside each)."""
    return folder.parent.name == EXTRACTED and extraction_sidecar(folder).is_file() and lock_of(folder).is_file()


def scan_file(key: str, cache_dir: Path | None = None) -> Path:
    """Where the scan result with key `key` is kept."""
    return subfolder(SCANS, cache_dir) / f"{key}.json"


def store_file(key: str, image_size: int, cache_dir: Path | None = None) -> Path:
    """Where the decoded-image store with key `key` at `image_size` is kept (a .npy file, see faceattr.store)."""
    return subfolder(DECODED, cache_dir) / f"{key}-{image_size}px.npy"


def folder_bytes(path: Path) -> int:
    """The total size of the files under `path`."""
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file() and not entry.is_symlink())


def extraction_entries(cache_dir: Path) -> list[dict]:
    """Each tarball extraction (with its archive) and each unfinished one."""
    entries = []
    for folder in sorted((cache_dir / EXTRACTED).glob("*")):
        if not folder.is_dir():
            continue
        if folder.name.endswith(STAGING_SUFFIX):  # KEY.RANDOM.partial: a staging folder
            key = folder.name.split(".")[0]
            entries.append({"kind": "extraction", "path": folder, "bytes": folder_bytes(folder),
                            "source": "unfinished", "lock": lock_of(folder.parent / key)})
            continue
        sidecar = extraction_sidecar(folder)
        archive = json.loads(sidecar.read_text()).get("archive", "?") if sidecar.exists() else "?"
        entries.append({"kind": "extraction", "path": folder, "bytes": folder_bytes(folder), "source": archive,
                        "lock": lock_of(folder)})
    return entries


def scan_entries(cache_dir: Path) -> list[dict]:
    """Each cached scan result (JSON; also an older kit's pickles, never read)."""
    return [{"kind": "scan", "path": path, "bytes": path.stat().st_size, "source": "", "lock": None}
            for path in sorted((cache_dir / SCANS).glob("*"))
            if path.suffix in (".json", ".pkl") and not path.name.startswith(".")]  # not one being written


def store_entries(cache_dir: Path) -> list[dict]:
    """Each decoded-image store, with its image count and size, and each unfinished one."""
    entries = []
    for store in sorted((cache_dir / DECODED).glob("*.npy")):
        owner = temporary_target(store)  # a temporary file: its store's own name is the one locked
        try:
            count, size = np.load(store, mmap_mode="r").shape[:2]
            source = "unfinished" if owner else f"{count} images at {size} px"
        except Exception:  # damaged: the next use decodes it again
            source = "unfinished" if owner else "damaged"
        entries.append({"kind": "decoded", "path": store, "bytes": store.stat().st_size, "source": source,
                        "lock": lock_of(owner or store)})
    return entries


def cache_entries(cache_dir: Path | None = None) -> list[dict]:
    """What the cache holds: each tarball extraction (with its archive), each scan result and each decoded-image
    store, with sizes, and each unfinished one (being written, or left by a killed writer); `lock` is the lock its
    writer and its users hold (None for a scan result)."""
    cache_dir = cache_dir or default_cache_dir()
    return extraction_entries(cache_dir) + scan_entries(cache_dir) + store_entries(cache_dir)


def remove_entry(entry: dict) -> None:
    """Delete one cache entry (its caller holds the entry's lock); an extraction disappears at once (renamed
    aside, then deleted), so no reader ever sees half of it."""
    path = entry["path"]
    if path.is_dir():
        doomed = path.with_name(f"{path.name.split('.')[0]}.{uuid.uuid4().hex[:8]}{STAGING_SUFFIX}")
        path.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        if not path.name.endswith(STAGING_SUFFIX):
            extraction_sidecar(path).unlink(missing_ok=True)
    else:
        path.unlink(missing_ok=True)


def clear_cache(cache_dir: Path | None = None) -> tuple[int, list[Path]]:
    """Delete every cache entry that no process is using (a training reading an extraction or a store holds its
    lock shared, a writer holds it exclusively); return the bytes freed and the entries left (busy)."""
    freed, busy = 0, []
    for entry in cache_entries(cache_dir):
        if entry["lock"] is None:
            remove_entry(entry)
        else:
            with locked(entry["lock"], blocking=False) as free:
                if not free:
                    busy.append(entry["path"])
                    continue
                remove_entry(entry)
        freed += entry["bytes"]
    return freed, busy
