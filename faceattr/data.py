"""UTKFace data layer: filename parsing, scanning a folder or tarball, and splitting. Where the scan keeps its
results and the tarball's extraction is faceattr.cache's to say; how an image is decoded, faceattr.decode's."""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import math
import os
import shutil
import sys
import tarfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faceattr.cache import (extraction_folder, extraction_sidecar, is_extraction, lock_of, partial_extractions,
                            scan_file, staging_folder, usable_cache_dir)
from faceattr.decode import DECODABLE_FORMATS, IMAGE_SUFFIXES, decode_pixels, tensorflow
from faceattr.defaults import DEFAULT_SEED
from faceattr.errors import DataError, DatasetNotFound  # noqa: F401  (re-exported)
from faceattr.files import FileTooLarge, atomic_write_json, file_digest, locked, shared_lock
from faceattr.labels import AGE_MAX, AGE_MIN, GENDER_NAMES, RACE_NAMES, age_band

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SCAN_FORMAT_VERSION = "5"  # bump when the parser, the scan's columns or its cache file change
PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAX_IMAGE_BYTES = 50_000_000  # a face photo is far smaller: a file over this is skipped, never read whole
MAX_EXTRACTED_BYTES = 20_000_000_000  # an archive whose files add up to more is refused before extraction


@dataclass(frozen=True)
class Parsed:
    """The result of parsing one file name: labels, or the reason it was rejected."""

    age: int | None = None
    gender: int | None = None
    race: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when the name parsed into valid labels."""
        return self.reason is None


def parse_filename(name: str) -> Parsed:
    """Parse `[age]_[gender]_[race]_[datetime].jpg(.chip.jpg)` into labels or a reason."""
    base = os.path.basename(name)
    if not base.lower().endswith(IMAGE_SUFFIXES):
        return Parsed(reason="not an image file")
    fields = base.split("_")
    if len(fields) < 4:
        return Parsed(reason="missing field")
    age_text, gender_text, race_text = fields[:3]
    if "" in (age_text, gender_text, race_text):
        return Parsed(reason="empty field")
    if not all(text.isascii() and text.isdigit() for text in (age_text, gender_text, race_text)):  # not "²"
        return Parsed(reason="non-numeric field")
    age, gender, race = int(age_text), int(gender_text), int(race_text)
    if not AGE_MIN <= age <= AGE_MAX:
        return Parsed(reason="age out of range")
    if gender >= len(GENDER_NAMES):
        return Parsed(reason="gender code out of range")
    if race >= len(RACE_NAMES):
        return Parsed(reason="race code out of range")
    return Parsed(age=age, gender=gender, race=race)


# TensorFlow reads only still WebP images (not animated ones), which PIL tells. Of BMP it reads uncompressed 8-bit
# grey, 24 and 32-bit, and even those with their colour table or colour masks ignored; the format alone cannot tell,
# so the scan asks TensorFlow's decoder itself about every BMP (importing TensorFlow only when a folder holds one).
ANIMATION_UNREADABLE_FORMATS = ("WEBP",)
TENSORFLOW_CHECKED_FORMATS = ("BMP",)
BMP_COMPRESSIONS = {1: "RLE8", 2: "RLE4", 3: "bitfields", 4: "JPEG", 5: "PNG"}


def bmp_kind(contents: bytes) -> str:
    """A BMP file's sub-format, from its header: "16-bit BMP", "8-bit RLE8 BMP", "24-bit OS/2 BMP"."""
    header = int.from_bytes(contents[14:18], "little")  # 12: OS/2's core header, bits at 24; else at 28
    bits = int.from_bytes(contents[24:26] if header == 12 else contents[28:30], "little")
    compression = 0 if header == 12 else int.from_bytes(contents[30:34], "little")
    name = BMP_COMPRESSIONS.get(compression)
    return f"{bits}-bit {name + ' ' if name else ''}{'OS/2 ' if header == 12 else ''}BMP"


def tensorflow_problem(path: str | Path, image) -> str | None:
    """Ask TensorFlow's decoder whether it reads the file (loaded by PIL as `image`) to the same RGB picture as PIL;
    None if it does, else the reason."""
    with open(path, "rb") as stream:
        contents = stream.read()
    kind = bmp_kind(contents) if image.format == "BMP" else image.format
    try:
        pixels = decode_pixels(contents).numpy()
    except tensorflow().errors.OpError:
        return f"format TensorFlow cannot decode ({kind})"
    if not np.array_equal(pixels, np.asarray(image.convert("RGB"))):
        if image.mode == "P":
            return f"TensorFlow ignores its colour table ({kind}, palette)"
        return f"TensorFlow decodes other colours than it holds ({kind})"
    return None


def content_hash(path: str | Path) -> str:
    """A short hash of the file's bytes, read as a stream: byte-identical copies share it. A file over
    MAX_IMAGE_BYTES raises `FileTooLarge` (after reading no more than that)."""
    return file_digest(path, lambda: hashlib.blake2b(digest_size=8), limit=MAX_IMAGE_BYTES)


def too_large(size: int) -> str:
    """The scan's reason for skipping a file of `size` bytes."""
    return f"file too large ({size / 1e6:,.0f} MB; a face photo is under {MAX_IMAGE_BYTES / 1e6:.0f} MB)"


def check_and_hash(path: Path) -> tuple[str | None, str | None]:
    """`check_image`'s verdict and, for a good image, its content hash; a file over MAX_IMAGE_BYTES (a sparse or
    planted giant) is skipped without being read."""
    size = os.path.getsize(path)
    if size > MAX_IMAGE_BYTES:
        return too_large(size), None
    problem = check_image(path)
    if problem:
        return problem, None
    try:
        return None, content_hash(path)
    except FileTooLarge:  # it grew since it was listed
        return too_large(os.path.getsize(path)), None


def check_image(path: str | Path) -> str | None:
    """Decode an image cheaply; return None if the training pipeline can read it, else the reason."""
    from PIL import Image

    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as image:
            if image.format not in DECODABLE_FORMATS:
                return f"format TensorFlow cannot decode ({image.format})"
            image.draft("RGB", (image.width // 8 or 1, image.height // 8 or 1))
            image.load()
            if image.format in ANIMATION_UNREADABLE_FORMATS and getattr(image, "is_animated", False):
                return f"format TensorFlow cannot decode (animated {image.format})"
            if image.format in TENSORFLOW_CHECKED_FORMATS:
                return tensorflow_problem(path, image)
    except Image.DecompressionBombError:
        return f"too many pixels (over {2 * Image.MAX_IMAGE_PIXELS:,}): a decompression bomb"
    except PermissionError:
        return "unreadable (permission denied)"
    except (OSError, SyntaxError, ValueError):
        return "unreadable image (truncated or corrupt)"
    return None


@dataclass
class ScanResult:
    """What a scan found: one row per valid image, and one row per skipped file."""

    frame: pd.DataFrame
    skipped: pd.DataFrame
    root: Path

    def duplicates(self) -> pd.DataFrame:
        """Images with byte-identical copies: one row per copy, grouped by content hash."""
        copies = self.frame[self.frame["content"].duplicated(keep=False)]
        return copies.sort_values(["content", "file"], ignore_index=True)[["content", "file", "age", "gender", "race"]]

    def skipped_by_reason(self) -> dict[str, int]:
        """Count skipped files per reason, most common first."""
        return {str(k): int(v) for k, v in self.skipped["reason"].value_counts().items()}


def list_files(root: Path) -> tuple[list[tuple[str, int, int]], list[dict[str, str]]]:
    """List (relative path, size, mtime_ns) of every file under `root`, sorted, and the entries that cannot be
    read (dangling or looping links, unreadable folders) with a reason each."""
    entries, problems = [], []

    def unreadable_folder(error: OSError) -> None:
        """os.walk's error hook: record the folder it could not list."""
        problems.append({"file": os.path.relpath(error.filename, root), "reason": "unreadable folder"})

    for folder, _dirs, names in os.walk(root, onerror=unreadable_folder):
        for name in names:
            full = os.path.join(folder, name)
            try:
                stat = os.stat(full)
            except OSError as error:
                reason = "link loop" if error.errno == errno.ELOOP else (
                    "dangling link" if os.path.islink(full) else "unreadable file")
                problems.append({"file": os.path.relpath(full, root), "reason": reason})
                continue
            entries.append((os.path.relpath(full, root), stat.st_size, stat.st_mtime_ns))
    return sorted(entries), problems


FRAME_COLUMNS = ["file", "age", "gender", "race", "gender_name", "race_name", "age_band", "path", "content"]


def build_frame(rows: list[dict], root: Path) -> pd.DataFrame:
    """Turn parsed rows into the labelled DataFrame, sorted by file."""
    frame = pd.DataFrame(rows, columns=["file", "age", "gender", "race", "content"])  # content: None if unknown
    frame = frame.sort_values("file", ignore_index=True)
    frame[["age", "gender", "race"]] = frame[["age", "gender", "race"]].astype("int64")
    frame["gender_name"] = [GENDER_NAMES[g] for g in frame["gender"]]
    frame["race_name"] = [RACE_NAMES[r] for r in frame["race"]]
    frame["age_band"] = [age_band(a) for a in frame["age"]]
    frame["path"] = [str(root / f) for f in frame["file"]]
    return frame[FRAME_COLUMNS]


def scan_folder(root: Path, progress: bool = False, workers: int = 8,
                listing: tuple[list[tuple[str, int, int]], list[dict[str, str]]] | None = None) -> ScanResult:
    """Scan a folder recursively (or the given `list_files` listing); parse names, check every image decodes."""
    files, problems = list_files(root) if listing is None else listing
    rows, skipped, to_check = [], list(problems), []
    for relative, _size, _mtime in files:
        parsed = parse_filename(relative)
        if parsed.ok:
            to_check.append((relative, parsed))
        else:
            skipped.append({"file": relative, "reason": parsed.reason})
    with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding
        verdicts = pool.map(check_and_hash, [root / r for r, _ in to_check])
        if progress and len(to_check) > 5000:
            from tqdm.auto import tqdm

            verdicts = tqdm(verdicts, total=len(to_check), desc="checking images", unit="img")
        for (relative, parsed), (problem, content) in zip(to_check, verdicts):
            if problem:
                skipped.append({"file": relative, "reason": problem})
            else:
                rows.append({"file": relative, "age": parsed.age, "gender": parsed.gender, "race": parsed.race,
                             "content": content})
    skipped_frame = pd.DataFrame(skipped, columns=["file", "reason"]).sort_values("file", ignore_index=True)
    return ScanResult(build_frame(rows, root), skipped_frame, root)


def archive_key(archive: Path) -> str:
    """A key for an archive's content: a SHA-256 of all its bytes, read as a stream (not its name or mtime, so a
    copied, renamed or touched archive reuses its extraction, and two archives differing anywhere never share one)."""
    info = os.stat(archive)
    return archive_digest(str(Path(archive).resolve()), info.st_size, info.st_mtime_ns, info.st_ino)[:20]


@functools.lru_cache(maxsize=16)
def archive_digest(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """The SHA-256 of the file at `path`, computed once per process for each version of it (size, mtime, inode)."""
    return file_digest(path)


def archive_members(archive: Path, tar: tarfile.TarFile, free_bytes: int) -> list[tarfile.TarInfo]:
    """The archive's regular files, read header by header; a DataError, before anything is extracted, for one
    larger than MAX_IMAGE_BYTES or a whole larger than MAX_EXTRACTED_BYTES or than `free_bytes`."""
    members, total = [], 0
    for member in tar:  # stops at the first giant, never decompressing past it
        if not member.isfile():
            continue
        if member.size > MAX_IMAGE_BYTES:
            raise DataError(f"{archive} holds {member.name} of {member.size / 1e6:,.0f} MB, larger than any face "
                            f"photo ({MAX_IMAGE_BYTES / 1e6:.0f} MB at most); nothing was extracted. Download "
                            "UTKFace.tar.gz from its official page (see data/README.md).")
        total += member.size
        if total > MAX_EXTRACTED_BYTES:
            raise DataError(f"{archive} unpacks to more than {MAX_EXTRACTED_BYTES / 1e9:.0f} GB; nothing was "
                            "extracted. Download UTKFace.tar.gz from its official page (see data/README.md).")
        members.append(member)
    if total > free_bytes:
        raise DataError(f"{archive} unpacks to {total / 1e6:,.0f} MB but the cache has {free_bytes / 1e6:,.0f} MB "
                        "free; nothing was extracted. Free some disk space, or set FACEATTR_CACHE_DIR to a folder "
                        "on a larger disk.")
    return members


def extract_tarball(archive: Path, cache_dir: Path) -> Path:
    """Extract a UTKFace .tar.gz into the cache (once, under a lock, atomically) and return the folder."""
    target = extraction_folder(archive_key(archive), cache_dir)
    extracted = target.parent
    with shared_lock(lock_of(target)):  # extracted already: a reader, beside any training that uses it
        if target.is_dir():
            return target
    with locked(lock_of(target)):  # a second scan of the same archive waits here, then reuses the result
        if target.is_dir():
            return target
        for orphan in partial_extractions(target):  # a killed extraction's: nobody else can be writing it now
            shutil.rmtree(orphan, ignore_errors=True)
        staging = staging_folder(target)
        try:
            with tarfile.open(archive) as tar:
                members = archive_members(archive, tar, shutil.disk_usage(extracted).free)
                if not any(parse_filename(m.name).ok for m in members):
                    raise DataError(f"{archive} is not a UTKFace archive: it holds no files named "
                                    "age_gender_race_datetime.jpg. Download UTKFace.tar.gz (see data/README.md).")
                tar.extractall(staging, members=members, filter="data")
            atomic_write_json(extraction_sidecar(target), {"archive": str(archive.resolve())})  # for `faceattr cache`
            staging.rename(target)
        except tarfile.FilterError as error:
            raise DataError(f"{archive} holds a file that would land outside its folder ({error}); nothing was "
                            "extracted. Download UTKFace.tar.gz from its official page (see data/README.md).") from error
        except (tarfile.TarError, EOFError, zlib.error) as error:
            raise DataError(f"{archive} is not a readable .tar.gz ({error}). "
                            "Re-download UTKFace.tar.gz (see data/README.md).") from error
        except OSError as error:
            raise DataError(f"could not extract {archive} into {extracted} ({error.strerror or error}); free some "
                            "disk space, or set FACEATTR_CACHE_DIR to a writable folder.") from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@contextmanager
def data_in_use(data: str | Path) -> Iterator[None]:
    """For the block, hold a shared lock on the cache's extraction of `data` (an archive, extracted first if
    needed, or a folder that is such an extraction), so `faceattr cache --clear` skips it; other data needs none."""
    path = Path(data).expanduser()
    if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
        for _attempt in range(3):  # cleared between its extraction and the lock: extract it again
            target = extract_tarball(path, usable_cache_dir())
            with shared_lock(lock_of(target)):
                if target.is_dir():
                    yield
                    return
        raise DataError(f"the extraction of {path} keeps being deleted (by `faceattr cache --clear`?); run again.")
    if path.is_dir() and is_extraction(path):
        with shared_lock(lock_of(path)):
            yield
        return
    yield


def scan_cache_key(root: Path, files: list[tuple[str, int, int]]) -> str:
    """Hash the folder's path and file list into a cache key."""
    digest = hashlib.sha1(f"{SCAN_FORMAT_VERSION}|{root.resolve()}".encode())
    for entry in files:
        digest.update(repr(entry).encode())
    return digest.hexdigest()[:20]


def scan(data: str | Path, progress: bool = False, cache: bool = True) -> ScanResult:
    """Scan a UTKFace folder or .tar.gz; return valid images and a skip report."""
    path = Path(data).expanduser()
    if not path.exists():
        raise DatasetNotFound(f"{path} does not exist. Download UTKFace.tar.gz (see data/README.md) "
                              "or run `faceattr sample data/sample` for the synthetic sample.")
    cache_dir = usable_cache_dir()
    if path.is_file():
        if not path.name.endswith((".tar.gz", ".tgz", ".tar")):
            raise DataError(f"{path} is a file, not a folder or a .tar.gz. "
                            "Point DATA at the UTKFace folder or at UTKFace.tar.gz.")
        path = extract_tarball(path, cache_dir)
    root = path.resolve()
    listing = list_files(root)
    cache_file = scan_file(scan_cache_key(root, listing[0]), cache_dir)
    result = read_scan_cache(cache_file, root) if cache else None
    if result is None:
        result = scan_folder(root, progress=progress, listing=listing)
        if cache:
            atomic_write_json(cache_file, {"frame": frame_to_json(result.frame),
                                           "skipped": frame_to_json(result.skipped)})
    if result.frame.empty:
        raise DataError(f"{path} holds no valid UTKFace images ({len(result.skipped)} files skipped). "
                        "Files must be named age_gender_race_datetime.jpg; see data/README.md.")
    return result


def frame_to_json(frame: pd.DataFrame) -> dict:
    """A DataFrame as plain JSON data: its columns and rows (a format that cannot run code when read)."""
    return frame.to_dict(orient="split", index=False)


def frame_from_json(payload: dict, columns: list[str]) -> pd.DataFrame:
    """`frame_to_json`'s inverse, refusing any other columns."""
    if payload["columns"] != columns:
        raise ValueError("unexpected columns")
    return pd.DataFrame(payload["data"], columns=columns)


def read_scan_cache(cache_file: Path, root: Path) -> ScanResult | None:
    """A cached scan, or None when there is none or it is damaged (then it is rebuilt)."""
    if not cache_file.exists():
        return None
    try:
        payload = json.loads(cache_file.read_text())
        frame = frame_from_json(payload["frame"], FRAME_COLUMNS)
        skipped = frame_from_json(payload["skipped"], ["file", "reason"])
        frame[["age", "gender", "race"]] = frame[["age", "gender", "race"]].astype("int64")
    except Exception as error:  # truncated, garbled or foreign: any failure to read means "scan again"
        print(f"note: the scan cache {cache_file} is damaged ({type(error).__name__}); scanning again.",
              file=sys.stderr)
        return None
    return ScanResult(frame, skipped, root)


def stratify_key(frame: pd.DataFrame, min_count: int) -> pd.Series:
    """Race x gender x broad age group, coarsened until every group has `min_count` rows."""
    broad_age = pd.cut(frame["age"], [0, 19, 39, 59, 200], labels=["0-19", "20-39", "40-59", "60+"])
    fine = frame["race_name"] + "/" + frame["gender_name"] + "/" + broad_age.astype(str)
    if fine.value_counts().min() >= min_count:
        return fine
    coarse = frame["race_name"] + "/" + frame["gender_name"]
    if coarse.value_counts().min() >= min_count:
        return coarse
    return frame["race_name"]


def copy_groups(frame: pd.DataFrame) -> pd.Series:
    """One key per distinct image: its content hash (byte-identical copies share it), else its file name."""
    if "content" not in frame:
        return frame["file"]
    return frame["content"].where(frame["content"].notna(), frame["file"])


def split_frame(frame: pd.DataFrame, validation_fraction: float = 0.15, test_fraction: float = 0.15,
                seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Return `frame` with a `split` column (train/validation/test), stratified and seeded; byte-identical copies of
    an image always land in the same part, so no test image is also a training image."""
    from sklearn.model_selection import train_test_split

    if not 0 < validation_fraction < 1 or not 0 < test_fraction < 1 or validation_fraction + test_fraction >= 1:
        raise DataError(f"validation_fraction={validation_fraction} and test_fraction={test_fraction} "
                        "must each be in (0, 1) and sum to less than 1.")
    ordered = frame.sort_values("file", ignore_index=True)
    groups = copy_groups(ordered)
    first_copies = ordered[~groups.duplicated()]  # the split is drawn over distinct images
    holdout_fraction = validation_fraction + test_fraction
    needed = math.ceil(round(1 / min(validation_fraction, test_fraction, 1 - holdout_fraction), 9))  # 1 per part
    if len(first_copies) < needed:
        raise DataError(f"{len(first_copies)} distinct images are too few to split {1 - holdout_fraction:.0%}/"
                        f"{validation_fraction:.0%}/{test_fraction:.0%}; use a folder with at least {needed} images.")
    index = np.arange(len(first_copies))
    try:
        key = stratify_key(first_copies, min_count=4)
        train_index, holdout_index = train_test_split(
            index, test_size=holdout_fraction, random_state=seed, stratify=key)
        validation_index, test_index = train_test_split(
            holdout_index, test_size=test_fraction / holdout_fraction, random_state=seed,
            stratify=key.iloc[holdout_index])
    except ValueError:  # too few per group to stratify: fall back to a seeded shuffle
        train_index, holdout_index = train_test_split(index, test_size=holdout_fraction, random_state=seed)
        validation_index, test_index = train_test_split(
            holdout_index, test_size=test_fraction / holdout_fraction, random_state=seed)
    split = np.empty(len(first_copies), dtype=object)
    split[train_index], split[validation_index], split[test_index] = "train", "validation", "test"
    part_of = dict(zip(copy_groups(first_copies), split))
    return ordered.assign(split=groups.map(part_of).to_numpy())


def training_subset(split: pd.DataFrame, train_images: int, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """`split` with at most `train_images` of its training rows (a quick pass): a seeded draw, stratified like the
    split, that keeps the oldest face, so the age scale (the oldest training age) stays the whole split's; validation
    and test stay whole."""
    from sklearn.model_selection import train_test_split

    training = np.flatnonzero(split["split"].to_numpy() == "train")
    if train_images >= len(training):
        return split
    if train_images < 1:
        raise DataError(f"train_images={train_images}: a training subset needs at least 1 image.")
    ages = split["age"].to_numpy()[training]
    oldest, rest = training[np.argmax(ages)], np.delete(training, np.argmax(ages))
    kept = []
    if train_images > 1:
        try:
            kept, _ = train_test_split(rest, train_size=train_images - 1, random_state=seed,
                                       stratify=stratify_key(split.iloc[rest], min_count=2))
        except ValueError:  # too few per group to stratify: a seeded draw
            kept, _ = train_test_split(rest, train_size=train_images - 1, random_state=seed)
    keep = np.ones(len(split), dtype=bool)
    keep[rest] = False
    keep[[oldest, *kept]] = True
    return split[keep]


def kit_data_dir() -> Path:
    """Where "auto" looks for UTKFace and where the sample is built: the checkout's data/ folder, else (installed
    from a wheel) FACEATTR_DATA_HOME or the user's data folder, never site-packages."""
    if (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "data").is_dir():
        return PROJECT_ROOT / "data"
    if os.environ.get("FACEATTR_DATA_HOME"):
        return Path(os.environ["FACEATTR_DATA_HOME"])
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "faceattr"


def data_location(data_dir: str | Path = "auto") -> tuple[Path, bool]:
    """Where `data_dir` points ("auto" is $FACEATTR_DATA, else data/UTKFace(.tar.gz), else the sample), and whether
    that is the kit's sample (built on first use), without building it."""
    data_root = kit_data_dir()
    if str(data_dir) == "auto" and os.environ.get("FACEATTR_DATA"):
        data_dir = os.environ["FACEATTR_DATA"]  # lets the test suite pin "auto" to the sample
    if str(data_dir) == "auto":
        for candidate in (data_root / "UTKFace", data_root / "UTKFace.tar.gz"):
            if candidate.exists():
                return candidate, False
        data_dir = "sample"
    if str(data_dir) == "sample":
        return data_root / "sample", True
    return Path(data_dir).expanduser(), False


def resolve_data_dir(data_dir: str | Path = "auto") -> Path:
    """Resolve "auto" / "sample" to a real path (see `data_location`), building the sample when it is asked for."""
    path, sample = data_location(data_dir)
    if sample:
        from faceattr.sample import ensure_sample

        return ensure_sample(path)
    return path


def is_sample(path: str | Path) -> bool:
    """True when `path` is the kit's synthetic sample (it carries a SYNTHETIC marker file)."""
    return (Path(path) / "SYNTHETIC.txt").exists()
