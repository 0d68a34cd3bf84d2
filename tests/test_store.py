"""The decoded-image store: exact pixels, decoded once, rebuilt when damaged, never in the data folder."""

from __future__ import annotations

import errno
import os
import threading

import numpy as np
import pytest

import faceattr.store as store
from faceattr.data import scan
from faceattr.pipeline import decode_image, make_dataset

SIZE = 32


@pytest.fixture()
def paths(sample_dir):
    return list(scan(sample_dir, cache=False).frame["path"].head(40))


def counting_decoder(monkeypatch) -> list[int]:
    """Count the images `faceattr.store` decodes."""
    decoded, original = [], store.decode_batches

    def counted(paths, image_size):
        decoded.append(len(paths))
        yield from original(paths, image_size)

    monkeypatch.setattr(store, "decode_batches", counted)
    return decoded


def test_the_store_holds_exactly_the_pixels_decode_image_returns(paths):
    pixels = store.decoded_images(paths, SIZE)
    assert pixels.shape == (len(paths), SIZE, SIZE, 3) and pixels.dtype == np.uint8
    for row, path in enumerate(paths):
        assert np.array_equal(pixels[row], decode_image(path, SIZE).numpy()), path


def test_a_second_use_reads_the_store_without_decoding(paths, monkeypatch, private_cache):
    decoded = counting_decoder(monkeypatch)
    first = np.array(store.decoded_images(paths, SIZE))
    second = store.decoded_images(paths, SIZE)
    assert decoded == [len(paths)]                      # decoded once, by the first call only
    assert isinstance(second, np.memmap) and np.array_equal(first, second)
    assert list((private_cache / "decoded").glob("*.npy")) == [store.store_path(paths, SIZE)]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other shape", "zeroed pixels"])
def test_a_damaged_store_is_decoded_again(paths, monkeypatch, capsys, damage):
    expected = np.array(store.decoded_images(paths, SIZE))
    target = store.store_path(paths, SIZE)
    if damage == "zeroed pixels":  # the header is intact, the pages read zero: the store would train at chance
        with open(target, "r+b") as stream:
            stream.seek(np.load(target, mmap_mode="r").offset)
            stream.write(bytes(expected.nbytes))
    elif damage == "garbage":
        target.write_bytes(b"not a numpy file at all")
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:
        np.save(target, np.zeros((3, SIZE, SIZE, 3), np.uint8))
    decoded = counting_decoder(monkeypatch)
    assert np.array_equal(store.decoded_images(paths, SIZE), expected)
    assert decoded == [len(paths)]
    assert "is damaged" in capsys.readouterr().err
    assert store.read_store(target, len(paths), SIZE) is not None   # and the rebuilt one reads cleanly


def test_the_key_follows_the_files_order_content_and_size_and_tensorflow(paths, monkeypatch):
    import tensorflow

    key = store.store_key(paths, SIZE)
    assert store.store_key(paths, SIZE) == key
    assert store.store_key(paths[::-1], SIZE) != key
    assert store.store_key(paths, SIZE * 2) != key
    with monkeypatch.context() as patch:
        patch.setattr(tensorflow, "__version__", "0.0.1")   # another decoder may give other pixels
        assert store.store_key(paths, SIZE) != key
    stat = os.stat(paths[0])
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))   # the file was replaced
    assert store.store_key(paths, SIZE) != key


def test_nothing_is_written_into_the_data_folder(sample_dir, paths):
    before = sorted(p.name for p in sample_dir.rglob("*"))
    store.decoded_images(paths, SIZE)
    assert sorted(p.name for p in sample_dir.rglob("*")) == before


def test_a_full_disk_falls_back_to_memory_with_a_note(paths, monkeypatch, capsys):
    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "atomic_write", full)
    pixels = store.decoded_images(paths, SIZE)
    assert np.array_equal(pixels[0], decode_image(paths[0], SIZE).numpy())
    assert "No space left on device" in capsys.readouterr().err
    assert not store.store_path(paths, SIZE).exists()


def test_two_users_at_once_decode_once_and_read_the_same(paths, monkeypatch):
    decoded = counting_decoder(monkeypatch)
    results = [None, None]

    def use(index):
        results[index] = np.array(store.decoded_images(paths, SIZE))

    threads = [threading.Thread(target=use, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert decoded == [len(paths)] and np.array_equal(results[0], results[1])


def test_make_dataset_gives_the_same_batches_from_the_store_as_decoding(sample_dir):
    frame = scan(sample_dir, cache=False).frame.head(30)
    stored = list(make_dataset(frame, SIZE, batch_size=8, shuffle=True, seed=5))
    decoding = list(make_dataset(frame, SIZE, batch_size=8, shuffle=True, seed=5, cache=False))
    assert len(stored) == len(decoding) == 4
    for (images, targets), (images_again, targets_again) in zip(stored, decoding):
        assert np.array_equal(images.numpy(), images_again.numpy())
        assert all(np.array_equal(targets[head].numpy(), targets_again[head].numpy()) for head in targets)


def test_the_stores_disk_space_is_reserved_before_any_pixel_is_written(paths, monkeypatch):
    original, allocated = store.decode_into, []

    def checked(target, paths, image_size):
        """Where the pixels are about to be written: how much of the file is on disk already?"""
        allocated.append((os.stat(target.filename).st_blocks * 512, target.offset + target.nbytes))
        return original(target, paths, image_size)

    monkeypatch.setattr(store, "decode_into", checked)
    store.decoded_images(paths, SIZE)
    ((on_disk, needed),) = allocated
    assert on_disk >= needed  # a full disk fails here, as an OSError, never as SIGBUS on a page write later


def test_a_full_disk_while_reserving_the_store_falls_back_to_memory_and_leaves_nothing(paths, monkeypatch, capsys,
                                                                                         private_cache):
    def full(descriptor, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    pixels = store.decoded_images(paths, SIZE)
    assert np.array_equal(pixels[0], decode_image(paths[0], SIZE).numpy())
    assert "No space left on device" in capsys.readouterr().err
    assert not [path for path in (private_cache / "decoded").iterdir() if path.suffix == ".npy"]


def test_a_killed_writers_temporary_store_is_removed_when_the_store_is_built(paths, private_cache):
    target = store.store_path(paths, SIZE)
    target.parent.mkdir(parents=True, exist_ok=True)
    orphan = target.parent / f".{target.stem}.k1ll3d00.npy"  # atomic_write's name for it; its writer was killed
    orphan.write_bytes(bytes(4096))
    store.decoded_images(paths, SIZE)
    assert not orphan.exists() and target.exists()


def test_without_posix_fallocate_the_store_is_written_whole_and_reads_back(paths, monkeypatch, private_cache):
    monkeypatch.delattr(store.os, "posix_fallocate", raising=False)  # macOS and Windows: zeros are written instead
    pixels = np.array(store.decoded_images(paths, SIZE))
    assert store.read_store(store.store_path(paths, SIZE), len(paths), SIZE) is not None  # the header survived
    assert np.array_equal(pixels[0], decode_image(paths[0], SIZE).numpy())
