"""Faces in the wild: detect (mtcnn), align, crop like UTKFace, and predict in one batch."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from faceattr import import_tensorflow
from faceattr.errors import PhotoError
from faceattr.labels import GENDER_NAMES, RACE_NAMES

tf = import_tensorflow()

CROP_PIXELS = 200          # UTKFace's aligned & cropped images are 200 x 200
EYE_DISTANCE = 0.30        # eye-to-eye distance as a share of the crop width
EYE_HEIGHT = 0.45          # height of the eyes' midpoint as a share of the crop height
MAX_DETECTION_SIDE = 1600  # larger photos are downscaled for detection, boxes mapped back


def load_photo(path: str | Path) -> Image.Image:
    """Open a photo as RGB, honouring its EXIF rotation; grayscale, RGBA and CMYK are converted."""
    path = Path(path)
    if not path.is_file():
        raise PhotoError(f"{path} does not exist or is not a file.")
    try:
        with Image.open(path) as image:
            image.load()
            return ImageOps.exif_transpose(image).convert("RGB")
    except Image.DecompressionBombError as error:
        raise PhotoError(f"{path} has too many pixels to open safely ({error}); resize it first.") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise PhotoError(f"{path} is not a readable image ({error}).") from error


@lru_cache(maxsize=1)
def detector():
    """The MTCNN detector (weights ship inside the mtcnn wheel: no download)."""
    from mtcnn import MTCNN

    return MTCNN()


def detect_faces(photo: Image.Image, min_face_size: int = 20, min_confidence: float = 0.9) -> list[dict]:
    """Every face's box [x, y, w, h], confidence and five keypoints, in the photo's own pixels."""
    scale = min(1.0, MAX_DETECTION_SIDE / max(photo.size))
    small = photo if scale == 1.0 else photo.resize((round(photo.width * scale), round(photo.height * scale)),
                                                    Image.BILINEAR)
    found = detector().detect_faces(np.asarray(small), min_face_size=max(12, round(min_face_size * scale)))
    faces = []
    for face in found:
        if face["confidence"] < min_confidence:
            continue
        faces.append({
            "box": [round(value / scale) for value in face["box"]],
            "confidence": float(face["confidence"]),
            "keypoints": {name: (float(x) / scale, float(y) / scale) for name, (x, y) in face["keypoints"].items()},
        })
    return sorted(faces, key=lambda face: (face["box"][0], face["box"][1]))


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
    from faceattr.pipeline import resize_pixels

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


def predict_faces(model, photo: Image.Image, min_face_size: int = 20, min_confidence: float = 0.9) -> list[dict]:
    """Detect, align and crop every face, then predict them all in one batch."""
    faces = detect_faces(photo, min_face_size, min_confidence)
    crops = [align_crop(photo, face["keypoints"]) for face in faces]
    if not faces:
        return []
    outputs = model.predict(crops_to_batch(crops, model.input_shape[1]), verbose=0)
    return [{**face, **describe(outputs, index), "crop": crop} for index, (face, crop) in enumerate(zip(faces, crops))]


def annotate(photo: Image.Image, faces: list[dict]) -> Image.Image:
    """Draw each face's box and a short label (age, gender, race) on a copy of the photo."""
    annotated = photo.copy()
    draw = ImageDraw.Draw(annotated)
    width = max(2, round(max(photo.size) / 300))
    for face in faces:
        x, y, w, h = face["box"]
        draw.rectangle([x, y, x + w, y + h], outline=(255, 200, 0), width=width)
        label = f"{face['age']:.0f} {face['gender']} {face['race']}"
        text_box = draw.textbbox((x, y), label)
        draw.rectangle([x, y - (text_box[3] - text_box[1]) - 4, x + text_box[2] - text_box[0] + 4, y],
                       fill=(255, 200, 0))
        draw.text((x + 2, y - (text_box[3] - text_box[1]) - 3), label, fill=(0, 0, 0))
    return annotated


def json_record(file: str, faces: list[dict]) -> dict:
    """The JSON object `faceattr predict --json` prints for one photo."""
    keys = ("box", "confidence", "age", "gender", "gender_probs", "race", "race_probs")
    return {"file": file, "faces": [{key: face[key] for key in keys} for face in faces]}
