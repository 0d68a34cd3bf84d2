"""The command line: JSON output, one-line errors, and no TensorFlow import for data commands."""

import json
import subprocess
import sys

import pytest

from faceattr.cli import main
from faceattr.data import scan


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run `faceattr ARGS` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "faceattr.cli", *args], capture_output=True, text=True)


def test_scan_json_has_counts(sample_dir, capsys):
    assert main(["scan", str(sample_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    frame = scan(sample_dir).frame
    assert report["valid"] == len(frame) == 200
    assert report["skipped"] == sum(report["skipped_by_reason"].values()) == 9
    assert report["gender"] == frame["gender_name"].value_counts().to_dict()
    assert set(report["race"]) == {"white", "black", "asian", "indian", "others"}


@pytest.mark.parametrize("args, fragment", [
    (["scan", "/no/such/folder"], "/no/such/folder does not exist"),
    (["sample", "OUT", "--n", "3"], "--n 3 is too small"),
])
def test_bad_input_gives_one_line_error(args, fragment, tmp_path):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_sample_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["sample", str(tmp_path), "--n", "10"]) == 2
    assert "not the kit's synthetic sample (first: mine.txt)" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_data_commands_do_not_import_tensorflow(sample_dir, tmp_path):
    code = ("import sys; from faceattr.cli import main; "
            f"main(['scan', {str(sample_dir)!r}]); main(['sample', {str(tmp_path / 's')!r}, '--n', '10']); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_sample_rebuilds_an_existing_sample_without_leftovers(tmp_path, capsys):
    folder = tmp_path / "sample"
    assert main(["sample", str(folder), "--n", "30"]) == 0
    assert main(["sample", str(folder), "--n", "12"]) == 0
    assert len(scan(folder).frame) == 12
