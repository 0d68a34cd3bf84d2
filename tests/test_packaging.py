"""pyproject.toml and environment.yml must list the same dependencies."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def requirement_map(lines: list[str]) -> dict[str, str]:
    """Map normalised package names to their version specifiers."""
    result = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(.*)$", line)
        result[match.group(1).lower().replace("_", "-")] = match.group(2).replace(" ", "")
    return result


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip_section = next(item["pip"] for item in environment if isinstance(item, dict))
    conda_packages = [item for item in environment if isinstance(item, str) and not item.startswith(("python=", "pip"))]
    listed = conda_packages + [item for item in pip_section if not item.startswith("-e")]
    assert requirement_map(listed) == requirement_map(wanted)


def test_the_install_step_registers_a_jupyter_kernel_named_for_the_kit():
    """`make` installs the `faceattr` kernel into .venv, so a class picks the kit's environment by name."""
    import sys

    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("faceattr")
    assert Path(spec.argv[0]).resolve() == Path(sys.executable).resolve()
    assert "faceattr" in spec.display_name
    assert 'ipykernel install --sys-prefix --name faceattr' in (Path(__file__).parents[1] / "Makefile").read_text()
