"""Detection on real photos (faceattr.photocases): real faces, real mtcnn, no mocks."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceattr import detect, photocases
from faceattr.cli import main
from faceattr.detect import detect_faces, load_photo
from faceattr.model import build_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def detected(tmp_path_factory):
    """Every case, written as a file, read back with load_photo (EXIF and all) and detected once."""
    cases = photocases.build_cases()
    paths = photocases.write_cases(cases, tmp_path_factory.mktemp("cases"))
    photos = [load_photo(path) for path in paths]
    return [(case, photo, detect_faces(photo)) for case, photo in zip(cases, photos)]


@pytest.mark.slow
def test_the_cases_cover_what_the_issue_asks_for(detected):
    names = [case.name for case, _, _ in detected]
    sizes = [face[3] for case, _, _ in detected for face in case.faces]
    assert {"phone_4000", "phone_6000", "filling_frame", "exif_rotated_6", "border_cut"} <= set(names)
    assert max(len(case.faces) for case, _, _ in detected) >= 9
    assert min(sizes) <= 24 and any(24 <= size <= 40 for size in sizes)
    assert {"astronaut", "camera"} <= set(names), "scikit-image (a test dependency) ships two more real faces"
    text_and_signs = {"portrait_with_sign", "no_face_signs", "no_face_signs_large", "no_face_text", "no_face_page",
                      "no_face_matplotlib_logo", "no_face_temple", "no_face_checkerboard"}
    assert text_and_signs <= set(names), "negatives with text, signs and patterns"
    assert any(size < 20 for size in sizes), "faces too small to read, which detection leaves out"


def test_the_real_photos_ship_inside_the_installed_packages():
    """No download: the faces are files inside the matplotlib and scikit-image wheels, not fetched on first use."""
    import matplotlib
    import skimage

    assert (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").is_file()
    shipped = Path(skimage.__file__).parent / "data"
    assert {"astronaut.png", "camera.png"} <= {path.name for path in shipped.iterdir()}
    assert all((shipped / f"{name}.png").is_file() or (shipped / f"{name}.jpg").is_file()
               for name in photocases.NEGATIVES)
    patterns = photocases.text_and_patterns()  # scikit-image's loaders raise for a file that needs a download
    assert set(patterns) == set(photocases.TEXT_AND_PATTERNS) | {"matplotlib_logo", "temple"}
    assert all(min(photo.size) >= 100 and photo.mode == "RGB" for photo in patterns.values())


@pytest.mark.slow
def test_every_placed_face_of_40_pixels_or_more_is_found(detected):
    missed = []
    for case, _, faces in detected:
        hit, _ = photocases.match([face["box"] for face in faces], case.faces)
        missed += [f"{case.name}: {face}" for face, found in zip(case.faces, hit) if face[3] >= 40 and not found]
    assert missed == []


@pytest.mark.slow
def test_the_face_filling_a_phone_photo_gives_exactly_one_face(detected):
    (faces,) = [faces for case, _, faces in detected if case.name == "filling_frame"]
    assert len(faces) == 1


@pytest.mark.slow
def test_false_alarms_are_no_more_than_measured_and_rare_on_faceless_photos(detected):
    measured = json.loads((ROOT / "benchmarks" / "results" / "detect.json").read_text())["choice"]["false_alarms"]
    alarms = {case.name: photocases.match([face["box"] for face in faces], case.faces)[1]
              for case, _, faces in detected}
    assert sum(alarms.values()) <= measured
    faceless = [case.name for case, _, _ in detected if not case.faces]
    assert sum(alarms[name] > 0 for name in faceless) <= len(faceless) // 5


@pytest.mark.slow
def test_exif_rotated_files_come_back_upright(detected):
    for case, photo, _ in detected:
        assert photo.size == case.image.size, case.name
    rotated = [case for case, _, _ in detected if case.exif_orientation != 1]
    assert rotated and all(Image.open(io.BytesIO(case.jpeg_bytes())).size == case.image.size[::-1]
                           for case in rotated)


@pytest.mark.slow
def test_boxes_stay_inside_the_photo_and_quality_says_when_the_border_cut_them(detected):
    for case, photo, faces in detected:
        for face in faces:
            x, y, w, h = face["box"]
            assert 0 <= x and 0 <= y and x + w <= photo.width and y + h <= photo.height, case.name
            quality = face["quality"]
            assert quality["face_pixels"] == h and quality["confidence"] == round(face["confidence"], 3)
            touches = x == 0 or y == 0 or x + w == photo.width or y + h == photo.height
            assert not quality["cut_by_border"] or touches
    (border_faces,) = [faces for case, _, faces in detected if case.name == "border_cut"]
    assert sum(face["quality"]["cut_by_border"] for face in border_faces) == 4


def test_iou_and_matching():
    assert photocases.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert photocases.iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert photocases.iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    hit, alarms = photocases.match([(0, 0, 10, 10), (1, 1, 10, 10), (50, 50, 9, 9)], [(0, 0, 10, 10)])
    assert hit == [True] and alarms == 2  # one box per face: the second box on the same face is an alarm


def test_the_defaults_are_the_measured_choice():
    results = json.loads((ROOT / "benchmarks" / "results" / "detect.json").read_text())
    choice = results["choice"]
    assert detect.MIN_CONFIDENCE == choice["min_confidence"]
    assert detect.STAGE_THRESHOLDS["threshold_pnet"] == choice["threshold_pnet"]
    assert detect.STAGE_THRESHOLDS["threshold_rnet"] == choice["threshold_rnet"]
    assert detect.STAGE_THRESHOLDS["threshold_onet"] <= detect.MIN_CONFIDENCE


@pytest.fixture(scope="module")
def hopper():
    return photocases.sources()["hopper"]


def sixteen_bit(image: Image.Image) -> Image.Image:
    return Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)


def on_transparent(image: Image.Image) -> Image.Image:
    rgba = Image.new("RGBA", (image.width + 200, image.height + 200), (0, 0, 0, 0))
    rgba.paste(image, (100, 100))
    return rgba


@pytest.mark.parametrize("name, convert, suffix", [
    ("16-bit grey", sixteen_bit, ".png"),
    ("palette", lambda image: image.convert("P", palette=Image.Palette.ADAPTIVE), ".png"),
    ("cmyk", lambda image: image.convert("CMYK"), ".jpg"),
    ("transparent", on_transparent, ".png"),
    ("grey with alpha", lambda image: on_transparent(image).convert("LA"), ".png"),
])
def test_every_image_mode_gives_the_face(hopper, tmp_path, name, convert, suffix):
    path = tmp_path / f"photo{suffix}"
    convert(hopper).save(path)
    photo = load_photo(path)
    assert photo.mode == "RGB"
    assert np.asarray(photo).std() > 20, f"{name}: the pixels lost their contrast"
    assert len(detect_faces(photo)) == 1


def test_an_animated_gif_is_read_at_its_first_frame(hopper, tmp_path):
    path = tmp_path / "animated.gif"
    grey = Image.new("RGB", hopper.size, (128, 128, 128))
    hopper.save(path, save_all=True, append_images=[grey, grey])
    assert len(detect_faces(load_photo(path))) == 1
    grey.save(path, save_all=True, append_images=[hopper])
    assert detect_faces(load_photo(path)) == []


@pytest.mark.slow
def test_bad_photos_each_give_one_line_and_the_rest_go_on(hopper, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    build_model(image_size=32, trunk_filters=(8, 16)).save(run / "model.keras")
    good = tmp_path / "hopper.jpg"
    hopper.save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:4000])
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo")
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    huge = tmp_path / "huge.jpg"
    Image.new("RGB", (12_000, 12_000), (90, 120, 150)).save(huge)
    wall = tmp_path / "wall.png"
    Image.new("RGB", (640, 480), (200, 200, 200)).save(wall)
    bad = [truncated, text, folder, tiny, huge, wall]
    code = main(["predict", "--model", str(run), *map(str, bad), str(good), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == len(bad)
    for path, line in zip(bad, lines):
        assert str(path) in line
    assert "too small to hold a face" in lines[3] and "no face found" in lines[4] and "no face found" in lines[5]
    records = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [record["file"] for record in records] == [str(huge), str(wall), str(good)]
    assert len(records[-1]["faces"]) == 1
