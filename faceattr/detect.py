"""Faces in the wild: detect (mtcnn), align, crop like UTKFace, and predict in one batch."""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from faceattr import import_tensorflow
from faceattr.decode import resize_pixels
from faceattr.defaults import DEFAULT_MIN_FACE_SIZE, check_min_confidence, check_min_face_size
from faceattr.errors import PhotoError
from faceattr.labels import GENDER_NAMES, RACE_NAMES

tf = import_tensorflow()

CROP_PIXELS = 200          # UTKFace's aligned & cropped images are 200 x 200
EYE_DISTANCE = 0.30        # eye-to-eye distance as a share of the crop width
EYE_HEIGHT = 0.45          # height of the eyes' midpoint as a share of the crop height
MIN_PHOTO_SIDE = 20        # no face fits in a smaller photo
COARSE_SIDE = 800          # the first pass sees the photo at most this large: MTCNN is surest of big faces here
COARSE_PAD = 0.15          # ... inside a grey border of this share of its side, so a face filling the frame is found
FINE_SIDE = 2000           # the second pass, for faces too small for the first, sees it up to this large (or whole)
FINE_FACES_BELOW = 48      # ... and keeps only faces under this many first-pass pixels (the first pass owns the rest)
MERGE_OVERLAP = 0.5        # two boxes are one face when either covers this share of the smaller one
# Chosen by `make bench-detect` on faceattr.photocases (benchmarks/results/detect.json): every face of 40 px or
# more found, then the fewest false alarms. Lower stage thresholds found no more faces there, only more false
# alarms; the final floor decides. tests/test_photocases.py ties these to the recorded choice.
STAGE_THRESHOLDS = {"threshold_pnet": 0.6, "threshold_rnet": 0.7, "threshold_onet": 0.7}
MIN_CONFIDENCE = 0.7


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: 16-bit and float scaled down, transparency laid on white, CMYK and palettes
    converted."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = pixels.max()
        pixels = pixels * (255 / top) if top > 255 else pixels
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("RGB")


def load_photo(path: str | Path | BinaryIO, name: str | None = None) -> Image.Image:
    """Open a photo as 8-bit RGB: its first frame, turned by its EXIF orientation. `path` may also be an open
    file (an upload), called `name` in messages."""
    label = name or str(path)
    if isinstance(path, (str, Path)):
        path = Path(path)
        if not path.is_file():
            raise PhotoError(f"{path} does not exist or is not a file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # up to twice PIL's limit is a photo
            with Image.open(path) as image:
                image.load()
                photo = to_rgb(ImageOps.exif_transpose(image))
    except UnidentifiedImageError:
        raise PhotoError(f"{label} is not a readable image (not a format Pillow knows); use a JPEG or PNG "
                         "photo.") from None
    except Image.DecompressionBombError as error:
        raise PhotoError(f"{label} has too many pixels to open safely ({error}); resize it first.") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise PhotoError(f"{label} is not a readable image ({error}).") from error
    if min(photo.size) < MIN_PHOTO_SIDE:
        raise PhotoError(f"{label} is {photo.width} x {photo.height} pixels, too small to hold a face; "
                         f"use a photo at least {MIN_PHOTO_SIDE} pixels on each side.")
    return photo


@lru_cache(maxsize=1)
def detector():
    """The MTCNN detector (weights ship inside the mtcnn wheel: no download)."""
    import keras
    from mtcnn import MTCNN

    chosen = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # its networks are float32, whatever the kit trains in
    try:
        return MTCNN()
    finally:
        keras.mixed_precision.set_global_policy(chosen)


def detect_at(photo: Image.Image, scale: float, min_face_size: int, thresholds: dict, pad: float = 0) -> list[dict]:
    """One MTCNN pass over the photo shrunk by `scale` (in a grey border of `pad` of its long side); boxes and
    keypoints in the photo's pixels, boxes not yet clipped to it."""
    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    resized = photo if size == photo.size else photo.resize(size, Image.LANCZOS, reducing_gap=3.0)
    border = round(pad * max(size))
    framed = ImageOps.expand(resized, border=border, fill=(128, 128, 128)) if border else resized
    found = detector().detect_faces(np.asarray(framed), fit_to_image=False,
                                    min_face_size=max(12, round(min_face_size * scale)), **thresholds)
    return [{"box": [(value - (border if index < 2 else 0)) / scale for index, value in enumerate(face["box"])],
             "confidence": float(face["confidence"]),
             "keypoints": {name: ((float(x) - border) / scale, (float(y) - border) / scale)
                           for name, (x, y) in face["keypoints"].items()}} for face in found]


def overlap(first: list, second: list) -> float:
    """The share of the smaller box [x, y, w, h] that the other covers."""
    width = min(first[0] + first[2], second[0] + second[2]) - max(first[0], second[0])
    height = min(first[1] + first[3], second[1] + second[3]) - max(first[1], second[1])
    return max(0, width) * max(0, height) / max(1e-9, min(first[2] * first[3], second[2] * second[3]))


def merge(faces: list[dict]) -> list[dict]:
    """Non-maximum suppression across passes: the surest box of each face stays."""
    kept = []
    for face in sorted(faces, key=lambda face: -face["confidence"]):
        if all(overlap(face["box"], other["box"]) < MERGE_OVERLAP for other in kept):
            kept.append(face)
    return kept


def inside_photo(face: dict, photo: Image.Image) -> dict:
    """The face with its box clipped to the photo in whole pixels, and a note of whether the border cut it."""
    x, y, w, h = face["box"]
    left, top = max(0, round(x)), max(0, round(y))
    right, bottom = min(photo.width, round(x + w)), min(photo.height, round(y + h))
    return {"box": [left, top, right - left, bottom - top], "confidence": face["confidence"],
            "keypoints": face["keypoints"],
            "quality": {"face_pixels": bottom - top, "confidence": round(face["confidence"], 3),
                        "cut_by_border": (left, top, right, bottom) != (round(x), round(y), round(x + w), round(y + h))}}


def large_enough(faces: list[dict], min_face_size: int) -> list[dict]:
    """The faces at least `min_face_size` pixels tall in the photo's own pixels (the box as found, before the border
    clips it): MTCNN's own minimum only sets the smallest scale it looks at, and its boxes can come out smaller."""
    return [face for face in faces if face["box"][3] >= min_face_size]


def detect_faces(photo: Image.Image, min_face_size: int = DEFAULT_MIN_FACE_SIZE, min_confidence: float | None = None,
                 thresholds: dict | None = None) -> list[dict]:
    """Every face's box [x, y, w, h], confidence, five keypoints and quality note, in the photo's own pixels; no
    face under `min_face_size` pixels tall, at any look.

    Two passes: one at most COARSE_SIDE pixels on the long side, border included, where MTCNN is surest of large
    faces; then, for a larger photo, one at up to FINE_SIDE pixels that keeps only the faces too small for the
    first (MTCNN is unsure of faces under about FINE_FACES_BELOW pixels).
    """
    check_min_face_size(min_face_size)
    thresholds = {**STAGE_THRESHOLDS, **(thresholds or {})}
    min_confidence = MIN_CONFIDENCE if min_confidence is None else check_min_confidence(min_confidence)
    long_side = max(photo.size)
    coarse = min(1.0, COARSE_SIDE / (1 + 2 * COARSE_PAD) / long_side)
    fine = min(1.0, FINE_SIDE / long_side)
    pyramid = min(min_face_size, DEFAULT_MIN_FACE_SIZE)  # MTCNN misses faces just above a larger minimum of its own
    faces = large_enough(detect_at(photo, coarse, pyramid, thresholds, pad=COARSE_PAD), min_face_size)
    if fine > coarse * 1.5 and min_face_size * coarse < FINE_FACES_BELOW:
        faces += [face for face in large_enough(detect_at(photo, fine, pyramid, thresholds), min_face_size)
                  if face["box"][3] * coarse < FINE_FACES_BELOW]
    faces = [inside_photo(face, photo) for face in merge(faces) if face["confidence"] >= min_confidence]
    return sorted((face for face in faces if face["box"][2] > 0 and face["box"][3] > 0),
                  key=lambda face: (face["box"][0], face["box"][1]))


def align_crop(photo: Image.Image, keypoints: dict, size: int = CROP_PIXELS) -> Image.Image:
    """Rotate so the eyes are level, scale and crop so they sit where UTKFace's crops put them."""
    (left_x, left_y), (right_x, right_y) = keypoints["left_eye"], keypoints["right_eye"]
    angle = math.atan2(right_y - left_y, right_x - left_x)
    scale = math.hypot(right_x - left_x, right_y - left_y) / (EYE_DISTANCE * size)  # photo pixels per crop pixel
    centre_x, centre_y = (left_x + right_x) / 2, (left_y + right_y) / 2
    target_x, target_y = size / 2, EYE_HEIGHT * size
    a, b = scale * math.cos(angle), -scale * math.sin(angle)
    d, e = scale * math.sin(angle), scale * math.cos(angle)
    coefficients = (a, b, centre_x - a * target_x - b * target_y, d, e, centre_y - d * target_x - e * target_y)
    return photo.transform((size, size), Image.AFFINE, coefficients, resample=Image.BILINEAR)


def crops_to_batch(crops: list[Image.Image], image_size: int) -> np.ndarray:
    """Resize crops exactly as the training pipeline resizes images; float32 pixels in 0..255."""
    if not crops:
        return np.zeros((0, image_size, image_size, 3), "float32")
    stacked = tf.constant(np.stack([np.asarray(crop, dtype=np.uint8) for crop in crops]))
    return tf.cast(resize_pixels(stacked, image_size), tf.float32).numpy()


def describe(outputs: dict, index: int) -> dict:
    """One face's prediction: age in years, gender and race with their probabilities."""
    gender_probs = np.asarray(outputs["gender"])[index]
    race_probs = np.asarray(outputs["race"])[index]
    return {
        "age": float(np.asarray(outputs["age"]).reshape(-1)[index]),
        "gender": GENDER_NAMES[int(gender_probs.argmax())],
        "gender_probs": {name: float(p) for name, p in zip(GENDER_NAMES, gender_probs)},
        "race": RACE_NAMES[int(race_probs.argmax())],
        "race_probs": {name: float(p) for name, p in zip(RACE_NAMES, race_probs)},
    }


def predict_faces(model, photo: Image.Image, min_face_size: int = DEFAULT_MIN_FACE_SIZE,
                  min_confidence: float | None = None) -> list[dict]:
    """Detect, align and crop every face, then predict them all in one batch."""
    faces = detect_faces(photo, min_face_size, min_confidence)
    crops = [align_crop(photo, face["keypoints"]) for face in faces]
    if not faces:
        return []
    outputs = model.predict(crops_to_batch(crops, model.input_shape[1]), verbose=0)
    return [{**face, **describe(outputs, index), "crop": crop} for index, (face, crop) in enumerate(zip(faces, crops))]


SYNTHETIC_NOTE = "model trained on the synthetic sample: these are not real predictions"


def annotate(photo: Image.Image, faces: list[dict], synthetic: bool | None = None) -> Image.Image:
    """Draw each face's box and a short label (age, gender, race) on a copy of the photo; a banner says when the
    model learnt from the synthetic sample."""
    annotated = photo.copy()
    draw = ImageDraw.Draw(annotated)
    width = max(2, round(max(photo.size) / 300))
    font_size = max(12, round(max(photo.size) / 60))
    for face in faces:
        x, y, w, h = face["box"]
        draw.rectangle([x, y, x + w, y + h], outline=(255, 200, 0), width=width)
        label = f"{face['age']:.0f} {face['gender']} {face['race']}"
        left, top, right, bottom = draw.textbbox((x, y), label, font_size=font_size, anchor="lb")
        draw.rectangle([left - 2, top - 2, right + 2, bottom + 2], fill=(255, 200, 0))
        draw.text((x, y), label, fill=(0, 0, 0), font_size=font_size, anchor="lb")
    if synthetic:
        left, top, right, bottom = draw.textbbox((4, photo.height - 4), SYNTHETIC_NOTE, font_size=font_size,
                                                 anchor="lb")
        draw.rectangle([0, top - 4, right + 4, photo.height], fill=(0, 0, 0))
        draw.text((4, photo.height - 4), SYNTHETIC_NOTE, fill=(255, 255, 255), font_size=font_size, anchor="lb")
    return annotated


def json_record(file: str, faces: list[dict], provenance: dict | None = None) -> dict:
    """The JSON object `faceattr predict --json` prints for one photo: its faces and what the model learnt from."""
    keys = ("box", "confidence", "quality", "age", "gender", "gender_probs", "race", "race_probs")
    record = {"file": file, "faces": [{key: face[key] for key in keys} for face in faces]}
    if provenance is not None:
        record["model"] = {**provenance, **({"note": SYNTHETIC_NOTE} if provenance["synthetic"] else {})}
    return record
