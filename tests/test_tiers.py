"""The fast tier: tests that train are recognised, refused commands are not."""

from __future__ import annotations

from tests.conftest import training_call


def test_training_calls_are_recognised_and_refused_commands_are_not():
    assert training_call('    history = model.fit(images, labels, epochs=8)')
    assert training_call('    assert main(["train", "--data", str(faces), "--out", str(run)]) == 0')
    assert training_call('    subprocess.run([faceattr, "run", "--data", "faces"], check=True)')
    assert not training_call('    assert main(["train", "--out", str(run), "--balance", "fair"]) == 2')
    assert not training_call('    result = subprocess.run([python, "-m", "faceattr.cli", "train", *args])\n'
                             '    assert result.returncode == 2')
    assert not training_call('    frame = split[split["split"] == "train"]')
