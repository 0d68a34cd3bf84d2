"""One validity rule: the scan accepts exactly the images the training pipeline decodes to the right picture, every
variant PIL can write and the BMP sub-formats it cannot, under any of the usual suffixes."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceattr.data import IMAGE_SUFFIXES, scan

PIL_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM", "TGA", "ICO", "PCX", "SGI", "IM", "DDS",
               "JPEG2000", "QOI", "SPIDER", "XBM", "MSP", "BLP", "ICNS")
PIL_MODES = ("RGB", "L", "RGBA", "P", "CMYK", "I;16", "1", "LA", "I", "F")
# Save options that make another sub-format of the same format (PIL writes each of these).
PIL_OPTIONS = {"JPEG": ({"progressive": True}, {"subsampling": 0}, {"quality": 5}),
               "PNG": ({"bits": 4},), "WEBP": ({"lossless": True}, {"quality": 5}), "GIF": ({"interlace": False},),
               "TIFF": ({"compression": "tiff_lzw"},)}
ANIMATED = ("WEBP", "GIF", "PNG")  # the formats PIL writes with several frames (an animated PNG is an APNG)
USUAL_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")  # of the formats TensorFlow decodes
SIZE = 40


def pixels(seed: int = 0) -> np.ndarray:
    """A small colourful picture."""
    return (np.random.default_rng(seed).random((SIZE, SIZE, 3)) * 255).astype("uint8")


def saved(image: Image.Image, fmt: str, **options) -> bytes | None:
    """`image` written by PIL as `fmt`, or None when PIL cannot write that pair."""
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt, **options)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return buffer.getvalue()


def bmp(bits: int, rows: bytes, compression: int = 0, palette: bytes = b"", header: int = 40, masks: bytes = b"",
        height: int = 8) -> bytes:
    """An 8-pixel-wide BMP from raw parts: the sub-formats PIL reads but does not write."""
    if header == 12:  # OS/2's core header
        info = struct.pack("<IHHHH", 12, 8, height, 1, bits)
    else:
        info = struct.pack("<IiiHHIIiiII", header, 8, height, 1, bits, compression, len(rows), 2835, 2835,
                           len(palette) // 4, 0) + masks
        info += b"\0" * (header - len(info))
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + palette + rows


NOISE = np.random.default_rng(0).integers(0, 256, 256, dtype=np.uint8).tobytes()  # 8 x 8 pixels of 32 bits
COLOURS = b"".join(bytes((index, 255 - index, index * 7 % 256, 0)) for index in range(256))
GREYS = b"".join(bytes((index, index, index, 0)) for index in range(256))
HANDMADE_BMPS = {  # name: (bytes, the scan's reason, or None when TensorFlow reads it right)
    "bmp-rle8": (bmp(8, b"".join(bytes((8, y, 0, 0)) for y in range(8)) + b"\0\1", 1, COLOURS),
                 "format TensorFlow cannot decode (8-bit RLE8 BMP)"),
    "bmp-rle4": (bmp(4, b"".join(bytes((8, 0x12, 0, 0)) for _ in range(8)) + b"\0\1", 2, COLOURS[:64]),
                 "format TensorFlow cannot decode (4-bit RLE4 BMP)"),
    "bmp-4bit": (bmp(4, bytes((0x01, 0x23, 0x45, 0x67)) * 8, 0, COLOURS[:64]),
                 "format TensorFlow cannot decode (4-bit BMP)"),
    "bmp-16bit": (bmp(16, NOISE[:128]), "format TensorFlow cannot decode (16-bit BMP)"),
    "bmp-16bit-565": (bmp(16, NOISE[:128], 3, masks=struct.pack("<III", 0xF800, 0x07E0, 0x001F)),
                      "format TensorFlow cannot decode (16-bit bitfields BMP)"),
    "bmp-os2": (bmp(24, NOISE[:192], header=12), "format TensorFlow cannot decode (24-bit OS/2 BMP)"),
    "bmp-8bit-colour": (bmp(8, NOISE[:64], 0, COLOURS), "TensorFlow ignores its colour table (8-bit BMP, palette)"),
    "bmp-32bit-xbgr": (bmp(32, NOISE, 3, masks=struct.pack("<III", 0xFF000000, 0xFF0000, 0xFF00)),
                       "TensorFlow decodes other colours than it holds (32-bit bitfields BMP)"),
    "bmp-32bit-rgba": (bmp(32, NOISE, 3, header=108,
                           masks=struct.pack("<IIII", 0xFF, 0xFF00, 0xFF0000, 0xFF000000)),
                       "TensorFlow decodes other colours than it holds (32-bit bitfields BMP)"),
    "bmp-8bit-grey": (bmp(8, NOISE[:64], 0, GREYS), None),
    "bmp-24bit-top-down": (bmp(24, NOISE[:192], height=-8), None),
    "bmp-24bit-v5": (bmp(24, NOISE[:192], header=124), None),
    "bmp-32bit-bitfields": (bmp(32, NOISE, 3, masks=struct.pack("<III", 0xFF0000, 0xFF00, 0xFF)), None),
}


def every_variant() -> dict[str, bytes]:
    """Every image PIL writes (each format in each mode, with each sub-format option, animated where it can) and
    the BMP sub-formats built by hand."""
    variants = {}
    for fmt in PIL_FORMATS:
        for mode in PIL_MODES:
            image = Image.fromarray(pixels()).convert(mode)
            for index, options in enumerate(({},) + PIL_OPTIONS.get(fmt, ())):
                payload = saved(image, fmt, **options)
                if payload is not None:
                    variants[f"{fmt}-{mode.replace(';', '')}-{index}"] = payload
    for fmt in ANIMATED:
        for mode in ("RGB", "RGBA"):
            first, second = (Image.fromarray(pixels(seed)).convert(mode) for seed in (1, 2))
            payload = saved(first, fmt, save_all=True, append_images=[second], duration=100)
            if payload is not None:
                variants[f"{fmt}-{mode}-animated"] = payload
    variants.update({name: payload for name, (payload, _) in HANDMADE_BMPS.items()})
    return variants


def pipeline_reads_it_right(path: Path) -> bool:
    """The training pipeline decodes the file to its first frame at its size, and, where PIL reads 8-bit pixels
    too, to the same picture (JPEG decoders may differ by a level or two)."""
    from faceattr.pipeline import decode_image

    with Image.open(path) as image:
        size = image.size
        reference = np.asarray(image.convert("RGB"), dtype=float) if image.mode in ("RGB", "RGBA", "L", "P") else None
    try:
        decoded = decode_image(str(path), size[0]).numpy()  # every variant is square: no resize
    except Exception:  # TensorFlow's own errors vary by format
        return False
    return decoded.shape == (size[1], size[0], 3) and (reference is None or np.abs(decoded - reference).mean() < 3)


def test_the_scan_accepts_exactly_what_the_training_pipeline_reads_right(tmp_path):
    folder, expected = tmp_path / "formats", {}
    folder.mkdir()
    for name, payload in every_variant().items():
        file = f"30_0_0_{name}.jpg"  # every file claims to be a JPEG: the scan reads the content, not the name
        (folder / file).write_bytes(payload)
        expected[file] = pipeline_reads_it_right(folder / file)
    assert len(expected) > 90 and 30 < sum(expected.values()) < len(expected) - 30
    result = scan(folder, cache=False)
    assert set(result.frame["file"]) == {name for name, ok in expected.items() if ok}
    reasons = result.skipped.set_index("file")["reason"]
    assert reasons["30_0_0_TIFF-RGB-0.jpg"] == "format TensorFlow cannot decode (TIFF)"
    assert reasons["30_0_0_BMP-1-0.jpg"] == "format TensorFlow cannot decode (1-bit BMP)"
    assert reasons["30_0_0_WEBP-RGB-animated.jpg"] == "format TensorFlow cannot decode (animated WEBP)"
    assert reasons["30_0_0_BMP-P-0.jpg"] == "TensorFlow ignores its colour table (8-bit BMP, palette)"


def test_each_bmp_sub_format_gets_its_own_reason_and_what_is_accepted_trains(tmp_path):
    """The sub-formats that stopped a training run (RLE8, RLE4, 16-bit BMP named .jpg) are skipped, each with the
    reason a student can act on; every BMP the scan keeps goes through the decoded-image store."""
    from faceattr.store import decode_batches

    for name, (payload, _) in HANDMADE_BMPS.items():
        (tmp_path / f"30_0_0_{name}.jpg").write_bytes(payload)
    result = scan(tmp_path, cache=False)
    reasons = result.skipped.set_index("file")["reason"].to_dict()
    assert reasons == {f"30_0_0_{name}.jpg": reason for name, (_, reason) in HANDMADE_BMPS.items() if reason}
    decoded = np.concatenate(list(decode_batches(result.frame["path"].tolist(), 8)))
    assert decoded.shape == (sum(reason is None for _, reason in HANDMADE_BMPS.values()), 8, 8, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_a_decodable_image_is_accepted_under_any_usual_suffix(fmt, tmp_path):
    payload = saved(Image.fromarray(pixels()), fmt)
    suffixes = USUAL_SUFFIXES + tuple(suffix.upper() for suffix in USUAL_SUFFIXES)
    for index, suffix in enumerate(suffixes):
        (tmp_path / f"30_0_0_{index}{suffix}").write_bytes(payload)
    result = scan(tmp_path, cache=False)
    assert result.skipped.empty and len(result.frame) == len(suffixes)
    assert set(IMAGE_SUFFIXES) == set(USUAL_SUFFIXES)


def test_the_name_rule_and_the_decode_rule_are_one_table():
    """Every accepted suffix is a format TensorFlow decodes, and every such format (but MPO, a camera's JPEG that
    keeps the .jpg name) is accepted under a suffix: both rules read faceattr.decode.FORMAT_SUFFIXES."""
    from faceattr.decode import DECODABLE_FORMATS, FORMAT_SUFFIXES

    registered = Image.registered_extensions()   # PIL: suffix -> format
    assert {registered[suffix] for suffix in IMAGE_SUFFIXES} <= set(DECODABLE_FORMATS)
    assert {fmt for fmt in DECODABLE_FORMATS if not FORMAT_SUFFIXES[fmt]} == {"MPO"}
    assert set(IMAGE_SUFFIXES) == {suffix for suffixes in FORMAT_SUFFIXES.values() for suffix in suffixes}
