"""Real-photo detection cases, built from photos that installed packages ship (no download).

The faces are real: matplotlib's Grace Hopper, and scikit-image's astronaut (Eileen Collins) and cameraman when
scikit-image is installed (`pip install -e .[test]`). From them we build what students photograph: phone-size
portraits, a face filling the frame, EXIF-rotated files, groups at mixed scales, small faces in a large frame, faces
too small to read (under 20 px, which detection leaves out) and faces cut by the border. Each case knows where its faces are, so detection can be scored: recall and false
positives per case (`score`). Photos without faces count false alarms: scikit-image's (a cat, coffee, a rocket ...),
and text, signs and patterns (scikit-image's handwriting, page, logo, clock and checkerboard, matplotlib's logo,
scikit-learn's temple, and sign boards drawn in matplotlib's fonts, alone and beside a portrait).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from faceattr.defaults import DEFAULT_MIN_FACE_SIZE

# Each source photo's face box [x, y, w, h], measured once with mtcnn at the photo's own size.
SOURCE_FACES = {"hopper": (178, 110, 173, 220), "astronaut": (182, 64, 83, 107), "camera": (197, 116, 58, 81)}
NEGATIVES = ("coffee", "chelsea", "rocket", "horse", "coins", "brick", "hubble_deep_field", "retina")
# Text, signs and patterns, where a detector may see eyes and a mouth: scikit-image's photos of handwriting, a
# printed page, its logo, a clock, a checkerboard, a colour wheel, a head phantom and stained tissue; matplotlib's
# logo; scikit-learn's temple photo.
TEXT_AND_PATTERNS = ("text", "page", "logo", "clock", "checkerboard", "colorwheel", "shepp_logan_phantom",
                     "immunohistochemistry")
# Words a student's photo may hold on a sign or a shirt, some with the round letters a detector may take for eyes.
SIGN_WORDS = ("EXIT", "STOP", "OPEN 9-5", "NO PARKING", "CAFE", "OO", "oo", "00", "@ @", "(o_o)", ":-)", "8 8",
              "BOOK SHOP", "LOOK", "2024", "Q&A", "GOOD FOOD", "ZOO")
SIGN_FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans.ttf")
EXIF_ROTATIONS = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}
MIN_FACE_MATCH_IOU = 0.3   # a found box is the placed face when they overlap at least this much


@dataclass
class Case:
    """One test photo: its pixels, the faces placed in it (boxes [x, y, w, h]) and an EXIF orientation to save."""

    name: str
    image: Image.Image
    faces: list[tuple[int, int, int, int]] = field(default_factory=list)
    exif_orientation: int = 1

    def jpeg_bytes(self) -> bytes:
        """The case as a JPEG file; a rotated case stores turned pixels and the EXIF tag that turns them back."""
        pixels, exif = self.image, Image.Exif()
        if self.exif_orientation != 1:
            pixels = self.image.transpose(EXIF_ROTATIONS[self.exif_orientation].value)
            exif[0x0112] = self.exif_orientation
        buffer = io.BytesIO()
        pixels.save(buffer, "JPEG", quality=92, exif=exif)
        return buffer.getvalue()


def sources() -> dict[str, Image.Image]:
    """The real face photos available here: Grace Hopper always, two more with scikit-image."""
    from matplotlib import cbook

    photos = {"hopper": Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")}
    try:
        from skimage import data
    except ImportError:
        return photos
    photos["astronaut"] = Image.fromarray(data.astronaut()).convert("RGB")
    photos["camera"] = Image.fromarray(data.camera()).convert("RGB")
    return photos


def negative_photos() -> dict[str, Image.Image]:
    """Photos with no face in them (scikit-image's, when installed), plus a flat grey frame and noise."""
    rng = np.random.default_rng(0)
    photos = {"grey": Image.new("RGB", (800, 600), (128, 128, 128)),
              "noise": Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8))}
    try:
        from skimage import data
    except ImportError:
        return photos
    for name in NEGATIVES:
        pixels = np.asarray(getattr(data, name)())
        pixels = pixels * 255 if pixels.dtype == bool else pixels  # the horse is a black-and-white mask
        photos[name] = Image.fromarray(pixels.astype(np.uint8)).convert("RGB")
    return photos


def text_and_patterns() -> dict[str, Image.Image]:
    """Faceless photos of text, signs and patterns that installed packages ship: scikit-image's (when installed),
    matplotlib's logo and scikit-learn's temple."""
    from matplotlib import cbook
    from sklearn.datasets import load_sample_image

    photos = {"matplotlib_logo": Image.open(cbook.get_sample_data("logo2.png", asfileobj=False)).convert("RGB"),
              "temple": Image.fromarray(load_sample_image("china.jpg"))}
    try:
        from skimage import data
    except ImportError:
        return photos
    for name in TEXT_AND_PATTERNS:
        pixels = np.asarray(getattr(data, name)(), dtype=np.float64)
        pixels = pixels * 255 / pixels.max() if pixels.max() <= 1 else pixels  # the phantom is 0..1
        photos[name] = Image.fromarray(pixels.astype(np.uint8)).convert("RGB")
    return photos


def signs(size: tuple[int, int], seed: int, heights: tuple[int, ...] = (10, 14, 18, 24, 32, 48, 72)) -> Image.Image:
    """Sign boards of SIGN_WORDS in matplotlib's DejaVu fonts, letters `heights` pixels tall, on a soft backdrop."""
    from matplotlib import get_data_path
    from PIL import ImageDraw, ImageFont

    rng, canvas = np.random.default_rng(seed), backdrop(size, seed)
    draw = ImageDraw.Draw(canvas)
    fonts = Path(get_data_path()) / "fonts" / "ttf"
    x, y, row = 10, 10, 0
    for index in range(len(SIGN_WORDS) * len(heights)):
        word, height = SIGN_WORDS[index % len(SIGN_WORDS)], heights[index % len(heights)]
        font = ImageFont.truetype(str(fonts / SIGN_FONTS[index % len(SIGN_FONTS)]), height)
        left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
        width, tall = right - left + height, bottom - top + height
        if x + width > size[0]:
            x, y, row = 10, y + row + 10, 0
        if y + tall > size[1]:
            break
        board, ink = (tuple(int(v) for v in rng.integers(150, 256, 3)), tuple(int(v) for v in rng.integers(0, 90, 3)))
        if index % 3 == 0:
            board, ink = ink, board  # light letters on a dark board
        draw.rectangle([x, y, x + width, y + tall], fill=board)
        draw.text((x + height // 2 - left, y + height // 2 - top), word, fill=ink, font=font)
        x, row = x + width + 10, max(row, tall)
    return canvas


def portrait_with_sign(photos: dict, seed: int) -> Case:
    """A single-person portrait beside a board of small signs: the one face, and text a detector may take for one."""
    cut, box = head(photos["hopper"], SOURCE_FACES["hopper"], 400)
    height = max(cut.height, 900)
    canvas = backdrop((cut.width + 900, height), seed)
    canvas.paste(signs((900, height), seed), (cut.width, 0))
    return paste("portrait_with_sign", canvas, [(cut, box)], [(0, (height - cut.height) // 2)])


def scaled(image: Image.Image, box: tuple, long_side: int) -> tuple[Image.Image, tuple]:
    """The photo resized to `long_side` pixels on its longer side, and the face box moved with it."""
    scale = long_side / max(image.size)
    size = (round(image.width * scale), round(image.height * scale))
    return image.resize(size, Image.BICUBIC), tuple(round(value * scale) for value in box)


def head(image: Image.Image, box: tuple, face_height: int, context: float = 1.9) -> tuple[Image.Image, tuple]:
    """A head-and-shoulders cut around the face, scaled so the face is `face_height` pixels tall."""
    x, y, w, h = box
    centre_x, centre_y = x + w / 2, y + h / 2
    half_w, half_h = w * context / 2, h * context / 2
    left, top = max(0, round(centre_x - half_w)), max(0, round(centre_y - half_h))
    right, bottom = min(image.width, round(centre_x + half_w)), min(image.height, round(centre_y + half_h))
    scale = face_height / h
    cut = image.crop((left, top, right, bottom))
    cut = cut.resize((max(1, round(cut.width * scale)), max(1, round(cut.height * scale))), Image.BICUBIC)
    return cut, (round((x - left) * scale), round((y - top) * scale), round(w * scale), round(h * scale))


def backdrop(size: tuple[int, int], seed: int) -> Image.Image:
    """A soft, textured background: blurred colour noise, like an out-of-focus room."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 200, (max(2, size[1] // 80), max(2, size[0] // 80), 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.BICUBIC).filter(ImageFilter.GaussianBlur(8))


def heads(photos: dict, face_heights: list[int], tilt: float = 0) -> list[tuple[Image.Image, tuple]]:
    """Head cuts of the given face heights, the photos taken in turn, every other one mirrored and tilted."""
    names, cuts = sorted(photos), []
    for index, face_height in enumerate(face_heights):
        source = names[index % len(names)]
        cut, box = head(photos[source], SOURCE_FACES[source], face_height)
        if index % 2:
            cut = cut.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            box = (cut.width - box[0] - box[2], box[1], box[2], box[3])
        if tilt:  # turn the head about the face's centre: the face box keeps its size and centre
            angle = tilt * (1 if index % 2 else -1) * (0.5 + 0.5 * (index % 3) / 2)
            centre = (box[0] + box[2] / 2, box[1] + box[3] / 2)
            cut = cut.rotate(angle, Image.BICUBIC, center=centre, fillcolor=(128, 128, 128))
        cuts.append((cut, box))
    return cuts


def low_light(case: Case, seed: int) -> Case:
    """The same photo taken in dim light by a phone: darker, noisier, softer, and compressed harder."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(case.image.filter(ImageFilter.GaussianBlur(1.2)), dtype=np.float32) * 0.45
    pixels = np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=55)
    return Case(f"{case.name}_low_light", Image.open(buffer).convert("RGB"), case.faces)


def paste(name: str, canvas: Image.Image, cuts: list, places: list[tuple[int, int]]) -> Case:
    """Paste each head at its place; the case's faces are the pasted face boxes."""
    faces = []
    for (cut, box), (x, y) in zip(cuts, places):
        canvas.paste(cut, (x, y))
        faces.append((x + box[0], y + box[1], box[2], box[3]))
    return Case(name, canvas, faces)


def group(name: str, photos: dict, face_heights: list[int], width: int, seed: int, gap: int = 12,
          tilt: float = 0) -> Case:
    """A group photo: heads of the given face heights packed in rows, `width` pixels wide (at least 3:2)."""
    cuts, places, x, y, row_height = heads(photos, face_heights, tilt), [], gap, gap, 0
    for cut, _ in cuts:
        if x + cut.width + gap > width and x > gap:
            x, y, row_height = gap, y + row_height + gap, 0
        places.append((x, y))
        x, row_height = x + cut.width + gap, max(row_height, cut.height)
    height = max(y + row_height + gap, width * 2 // 3)
    shift = (height - y - row_height - gap) // 2  # the people stand in the middle of the frame
    return paste(name, backdrop((width, height), seed), cuts, [(px, py + shift) for px, py in places])


def scatter(name: str, photos: dict, face_heights: list[int], size: tuple[int, int], seed: int) -> Case:
    """Heads spread over a large frame, one per cell of a grid, at a random spot in the cell."""
    rng, cuts = np.random.default_rng(seed), heads(photos, face_heights)
    columns = int(np.ceil(np.sqrt(len(cuts) * size[0] / size[1])))
    rows = int(np.ceil(len(cuts) / columns))
    cell_w, cell_h = size[0] // columns, size[1] // rows
    cells = rng.permutation(rows * columns)[:len(cuts)]
    places = [(int(cell % columns * cell_w + rng.integers(0, max(1, cell_w - cut.width))),
               int(cell // columns * cell_h + rng.integers(0, max(1, cell_h - cut.height))))
              for cell, (cut, _) in zip(cells, cuts)]
    return paste(name, backdrop(size, seed), cuts, places)


def border_cut(photos: dict, seed: int) -> Case:
    """Four faces each cut by the frame's edge (a quarter to a third of the face outside), one whole face."""
    source = "hopper"
    canvas = backdrop((1600, 1200), seed)
    cut, box = head(photos[source], SOURCE_FACES[source], 260)
    spots = [(-box[0] - box[2] // 4, 100), (1600 - box[0] - box[2] * 2 // 3, 500),
             (500, -box[1] - box[3] // 3), (1000, 1200 - box[1] - box[3] * 3 // 4), (620, 420)]
    faces = []
    for px, py in spots:
        canvas.paste(cut, (px, py))
        left, top = max(0, px + box[0]), max(0, py + box[1])
        right, bottom = min(1600, px + box[0] + box[2]), min(1200, py + box[1] + box[3])
        faces.append((left, top, right - left, bottom - top))
    return Case("border_cut", canvas, faces)


def build_cases() -> list[Case]:
    """Every case: real photos as shipped, resized, rotated, grouped, shrunk and cut; then the faceless ones."""
    photos = sources()
    cases = [Case(name, image, [SOURCE_FACES[name]]) for name, image in photos.items()]
    hopper = photos["hopper"]
    for long_side in (4000, 6000):
        image, box = scaled(hopper, SOURCE_FACES["hopper"], long_side)
        cases.append(Case(f"phone_{long_side}", image, [box]))
    x, y, w, h = SOURCE_FACES["hopper"]  # the face filling a 3000 x 4000 portrait: 80% of the frame's height
    tight = hopper.crop((x - w // 6, y - h // 8, x + w + w // 6, y + h + h // 8))
    image, _ = scaled(tight, (0, 0, 1, 1), 4000)
    cases.append(Case("filling_frame", image, [(round((w // 6) * 4000 / tight.height), round((h // 8) * 4000 / tight.height),
                                                round(w * 4000 / tight.height), round(h * 4000 / tight.height))]))
    image, box = scaled(hopper, SOURCE_FACES["hopper"], 2000)
    cases += [Case(f"exif_rotated_{tag}", image, [box], exif_orientation=tag) for tag in (6, 8)]
    rng = np.random.default_rng(1)
    for count, width in ((2, 4000), (3, 2500), (5, 1800), (7, 1200), (9, 4000)):
        heights = sorted(rng.integers(60, 400, count).tolist(), reverse=True)
        cases.append(group(f"group_{count}", photos, heights, width, seed=count))
    cases.append(group("group_7_tilted", photos, [150, 140, 130, 120, 110, 100, 90], 1200, seed=71, tilt=25))
    cases.append(low_light(cases[-3], seed=9))
    cases.append(group("group_7_selfie", photos, [66, 60, 56, 50, 46, 42, 40], 600, seed=70, gap=2))
    cases.append(low_light(cases[-1], seed=7))
    cases.append(scatter("small_faces", photos, [24, 28, 32, 36, 40, 44, 48, 56] * 2, (4000, 3000), seed=24))
    cases.append(group("tiny_faces", photos, [12, 14, 16, 18] * 3, 600, seed=12, gap=4))  # too small to read
    cases.append(border_cut(photos, seed=5))
    cases += [Case(f"no_face_{name}", image) for name, image in negative_photos().items()]
    cases.append(portrait_with_sign(photos, seed=3))
    cases += [Case("no_face_signs", signs((1600, 1200), seed=4)),
              Case("no_face_signs_large", signs((4000, 3000), seed=6, heights=(12, 20, 28, 40, 60, 90, 140)))]
    cases += [Case(f"no_face_{name}", image) for name, image in text_and_patterns().items()]
    return cases


def write_cases(cases: list[Case], folder: str | Path) -> list[Path]:
    """Save every case as a JPEG (with its EXIF orientation) in `folder`; the paths, in order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for case in cases:
        path = folder / f"{case.name}.jpg"
        path.write_bytes(case.jpeg_bytes())
        paths.append(path)
    return paths


def iou(first: tuple, second: tuple) -> float:
    """Intersection over union of two boxes [x, y, w, h]."""
    left, top = max(first[0], second[0]), max(first[1], second[1])
    right = min(first[0] + first[2], second[0] + second[2])
    bottom = min(first[1] + first[3], second[1] + second[3])
    overlap = max(0, right - left) * max(0, bottom - top)
    return overlap / (first[2] * first[3] + second[2] * second[3] - overlap)


def match(found: list, placed: list) -> tuple[list[bool], int]:
    """Which placed faces were found (best overlap first, one box each), and how many boxes match no face."""
    pairs = sorted(((iou(box, face), i, j) for i, box in enumerate(found) for j, face in enumerate(placed)),
                   reverse=True)
    used_boxes, hit = set(), [False] * len(placed)
    for overlap, i, j in pairs:
        if overlap >= MIN_FACE_MATCH_IOU and i not in used_boxes and not hit[j]:
            used_boxes.add(i)
            hit[j] = True
    return hit, len(found) - len(used_boxes)


def score(case: Case, found: list, seconds: float, min_face: int = 40) -> dict:
    """One row of the recall table: faces placed and found (all, and those of `min_face` px or more), false alarms,
    and the boxes reported under DEFAULT_MIN_FACE_SIZE pixels tall (too small to read)."""
    hit, false_alarms = match(found, case.faces)
    large = [h for h, face in zip(hit, case.faces) if face[3] >= min_face]
    return {"case": case.name, "size": f"{case.image.width}x{case.image.height}", "placed": len(case.faces),
            "found": sum(hit), f"placed_{min_face}px": len(large), f"found_{min_face}px": sum(large),
            "false_alarms": false_alarms, f"under_{DEFAULT_MIN_FACE_SIZE}px": sum(box[3] < DEFAULT_MIN_FACE_SIZE
                                                                                for box in found),
            "seconds": round(seconds, 3)}


def recall_table(rows: list[dict]) -> pd.DataFrame:
    """The per-case rows as a table, with a total row."""
    table = pd.DataFrame(rows)
    total = table.select_dtypes("number").sum().to_dict()
    total["seconds"] = float(table["seconds"].median())
    return pd.concat([table, pd.DataFrame([{"case": "total (seconds: median)", "size": "", **total}])],
                     ignore_index=True)
