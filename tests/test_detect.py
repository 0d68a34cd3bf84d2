"""Faces in the wild, with real images and real mtcnn detection (no mocks)."""

import json
import re

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image

from faceattr import photocases
from faceattr.cli import main
from faceattr.detect import (align_crop, crops_to_batch, detect_faces, json_record, load_photo,
                             predict_faces)
from faceattr.errors import SettingsError
from faceattr.model import build_model

HOPPER = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


@pytest.fixture(scope="module")
def hopper():
    return load_photo(HOPPER)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder holding a small (untrained) model: prediction only needs model.keras."""
    folder = tmp_path_factory.mktemp("run")
    build_model(image_size=32, trunk_filters=(8, 16)).save(folder / "model.keras")
    return folder


def inside(point, box):
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def test_grace_hopper_has_one_face_with_both_eyes_in_its_box(hopper):
    faces = detect_faces(hopper)
    assert len(faces) == 1
    face = faces[0]
    assert face["confidence"] > 0.9
    assert inside(face["keypoints"]["left_eye"], face["box"]) and inside(face["keypoints"]["right_eye"], face["box"])


def test_detection_works_while_the_kit_trains_in_mixed_precision(hopper):
    import keras

    from faceattr.detect import detector

    detector.cache_clear()   # built afresh under the mixed policy, as in a notebook after setup_notebook
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    faces = detect_faces(hopper)
    assert len(faces) == 1 and keras.mixed_precision.global_policy().name == "mixed_bfloat16"


def test_two_copies_side_by_side_give_two_faces(hopper):
    pair = Image.new("RGB", (hopper.width * 2, hopper.height))
    pair.paste(hopper, (0, 0))
    pair.paste(hopper, (hopper.width, 0))
    faces = detect_faces(pair)
    assert len(faces) == 2
    assert faces[0]["box"][0] < hopper.width <= faces[1]["box"][0]


@pytest.mark.parametrize("image", [
    Image.new("RGB", (400, 300), (128, 128, 128)),
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)),
])
def test_blank_and_noise_give_no_faces(image):
    assert detect_faces(image) == []


def test_large_photo_is_downscaled_and_boxes_map_back(hopper):
    big = hopper.resize((hopper.width * 8, hopper.height * 8))  # 4096 x 4800
    small_box = detect_faces(hopper)[0]["box"]
    big_faces = detect_faces(big)
    assert len(big_faces) == 1
    np.testing.assert_allclose(big_faces[0]["box"], np.array(small_box) * 8, atol=8 * 12)


@pytest.mark.parametrize("mode, suffix", [("L", ".jpg"), ("RGBA", ".png")])
def test_grayscale_and_alpha_photos_work(hopper, tmp_path, mode, suffix):
    path = tmp_path / f"photo{suffix}"
    hopper.convert(mode).save(path)
    photo = load_photo(path)
    assert photo.mode == "RGB"
    assert len(detect_faces(photo)) == 1


def test_aligned_crop_puts_level_eyes_where_utkface_does(hopper):
    tilted = hopper.rotate(15, resample=Image.BILINEAR, expand=True)
    crop = align_crop(tilted, detect_faces(tilted)[0]["keypoints"])
    assert crop.size == (200, 200)
    eyes = detect_faces(crop)[0]["keypoints"]
    (left_x, left_y), (right_x, right_y) = eyes["left_eye"], eyes["right_eye"]
    assert abs(left_y - right_y) < 5
    assert abs((left_x + right_x) / 2 - 100) < 8 and abs((left_y + right_y) / 2 - 90) < 10


def test_batch_prediction_equals_one_crop_at_a_time(hopper, run_dir):
    from faceattr.runs import RunFolder

    model = RunFolder(run_dir).load_model()
    pair = Image.new("RGB", (hopper.width * 2, hopper.height))
    pair.paste(hopper, (0, 0))
    pair.paste(hopper.transpose(Image.FLIP_LEFT_RIGHT), (hopper.width, 0))
    faces = predict_faces(model, pair)
    assert len(faces) == 2
    for face in faces:
        single = model.predict(crops_to_batch([face["crop"]], 32), verbose=0)
        assert face["age"] == pytest.approx(float(single["age"][0, 0]), rel=1e-4, abs=1e-4)
        np.testing.assert_allclose(list(face["race_probs"].values()), single["race"][0], rtol=1e-4, atol=1e-6)


def test_predict_json_has_the_documented_keys_and_types(run_dir, capsys):
    assert main(["predict", "--model", str(run_dir), HOPPER, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["file"] == HOPPER
    face = record["faces"][0]
    assert isinstance(face["box"], list) and len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
    assert isinstance(face["confidence"], float) and isinstance(face["age"], float)
    assert face["gender"] in ("male", "female") and set(face["gender_probs"]) == {"male", "female"}
    assert face["race"] in face["race_probs"] and len(face["race_probs"]) == 5
    assert sum(face["race_probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert set(face) == set(json_record("x", [dict(face, keypoints={})])["faces"][0])


def test_predictions_say_what_the_model_learnt_from(run_dir, tmp_path, capsys):
    import shutil

    from faceattr.detect import SYNTHETIC_NOTE
    from faceattr.runs import RunFolder

    assert main(["predict", "--model", str(run_dir), HOPPER, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == {"run": str(run_dir), "trained_on": None, "synthetic": None}
    synthetic_run = tmp_path / "synthetic"
    shutil.copytree(run_dir, synthetic_run)
    with RunFolder(synthetic_run).writing(replacing=[]) as run:  # config.json is written under the run's lock
        run.write_run_config(tmp_path / "sample", synthetic=True, seed=1, image_size=32, arch="x")
    plain, marked = tmp_path / "plain", tmp_path / "marked"
    assert main(["predict", "--model", str(run_dir), HOPPER, "--annotate", str(plain)]) == 0
    assert main(["predict", "--model", str(synthetic_run), HOPPER, "--json", "--annotate", str(marked)]) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out.strip().splitlines()[-1])
    assert record["model"]["synthetic"] is True and record["model"]["note"] == SYNTHETIC_NOTE
    assert SYNTHETIC_NOTE in captured.err
    plain_pixels, marked_pixels = (np.asarray(Image.open(folder / "grace_hopper_faces.jpg"), dtype=float)
                                   for folder in (plain, marked))
    difference = np.abs(plain_pixels - marked_pixels).mean(axis=(1, 2))  # per row
    assert difference[-10:].mean() > 10 and difference[:300].max() < 3  # a banner at the bottom, nothing else


def test_bad_photos_are_reported_and_the_rest_go_on(run_dir, tmp_path, capsys):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (300, 300), (200, 200, 200)).save(blank)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    code = main(["predict", "--model", str(run_dir), str(tmp_path / "missing.jpg"), str(broken), str(blank),
                 HOPPER, "--json", "--annotate", str(tmp_path / "annotated")])
    assert code == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [len(r["faces"]) for r in records] == [0, 1]
    assert "missing.jpg does not exist" in captured.err and "broken.jpg is not a readable image" in captured.err
    assert "wall.png: no face found" in captured.err
    assert (tmp_path / "annotated" / "grace_hopper_faces.jpg").is_file()


def test_exit_status_is_non_zero_only_when_no_photo_was_read(run_dir, tmp_path, capsys):
    assert main(["predict", "--model", str(run_dir), str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]) == 1
    assert capsys.readouterr().err.count("\n") == 2


def test_a_run_dir_without_a_model_says_which_command_makes_one(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path), HOPPER]) == 2
    assert "faceattr train" in capsys.readouterr().err


def test_a_decompression_bomb_and_an_unwritable_annotate_folder_do_not_stop_the_batch(run_dir, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb, optimize=True)
    (tmp_path / "taken").write_text("a file where the folder should be")
    code = main(["predict", "--model", str(run_dir), str(bomb), HOPPER, HOPPER, "--json",
                 "--annotate", str(tmp_path / "taken")])
    captured = capsys.readouterr()
    assert code == 1  # nothing was done completely
    assert "bomb.png has too many pixels" in captured.err
    assert captured.err.count("cannot write") == 2 and "writable --annotate folder" in captured.err
    assert [len(json.loads(line)["faces"]) for line in captured.out.strip().splitlines()] == [1, 1]


@pytest.fixture(scope="module")
def selfie():
    """Seven real faces 40 to 66 px tall in a 600 x 400 photo."""
    return photocases.group("selfie", photocases.sources(), [66, 60, 56, 50, 46, 42, 40], 600, seed=70, gap=2)


def test_the_minimum_face_size_holds_in_the_photos_own_pixels(selfie):
    """A minimum of 30 or 40 px still finds every face that tall (MTCNN's own minimum loses them all here), and
    no look reports a smaller box."""
    for minimum in (20, 30, 40):
        boxes = [face["box"] for face in detect_faces(selfie.image, min_face_size=minimum)]
        assert all(box[3] >= minimum for box in boxes), (minimum, boxes)
        hit, alarms = photocases.match(boxes, selfie.faces)
        assert alarms == 0 and all(found for found, face in zip(hit, selfie.faces) if face[3] >= minimum + 4), \
            (minimum, boxes)


def test_faces_too_small_to_read_are_not_reported_by_default():
    tiny = photocases.group("tiny", photocases.sources(), [12, 13, 14, 15, 16] * 3, 600, seed=12, gap=4)
    assert [face["box"] for face in detect_faces(tiny.image)] == []
    seen = [face["box"] for face in detect_faces(tiny.image, min_face_size=10)]  # the detector does see them
    assert len(seen) >= 6 and all(box[3] >= 10 for box in seen) and min(box[3] for box in seen) < 20


@pytest.mark.parametrize("option, value, fragment", [
    ("--min-confidence", "5", "minimum confidence 5.0 must lie in 0..1"),
    ("--min-confidence", "-0.1", "must lie in 0..1"),
    ("--min-face-size", "-5", "minimum face size -5 must be more than 0"),
    ("--min-face-size", "0", "must be more than 0"),
])
def test_predict_and_explain_refuse_a_detection_setting_out_of_range(option, value, fragment, run_dir, tmp_path,
                                                                     capsys):
    assert main(["predict", "--model", str(run_dir), HOPPER, option, value]) == 2
    error = capsys.readouterr().err
    assert fragment in error and error.count("\n") == 1
    assert main(["explain", "--model", str(run_dir), HOPPER, "--out", str(tmp_path / "maps"), option, value]) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "maps").exists()
    with pytest.raises(SettingsError, match="must"):  # the library refuses it too
        detect_faces(load_photo(HOPPER), **{option.strip("-").replace("-", "_"): float(value)})


def test_predict_labels_its_numbers(run_dir, capsys):
    assert main(["predict", "--model", str(run_dir), HOPPER]) == 0
    line = capsys.readouterr().out.strip()
    assert re.search(r"age \d+, (male|female) \(p=[01]\.\d\d\), \w+ \(p=[01]\.\d\d\); face \d+ px, detector [01]\.\d\d$",
                     line), line
