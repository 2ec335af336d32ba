"""Packaging: the dependency lists agree, the model folder ships in the wheel, CI runs `make test`.

pyproject.toml is the source of truth for the runtime dependencies; environment.yml (conda
users) and binder/ (mybinder.org, repo2docker) must list the same packages with the same lower
bounds, so that a notebook that works in one environment works in the others.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]

# conda-forge names that differ from the PyPI names
CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
# the files the embedded model folder (diffedit_lab/toy/model/) is made of
MODEL_FILES = [
    "model_index.json",
    "diffedit_lab.json",
    "README.md",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
]


# ---------------------------------------------------------------- parsing the three lists
def requirements(lines) -> dict[str, str]:
    """{canonical name: normalised specifier} of PEP 508 requirement strings."""
    out = {}
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in out, f"{name} listed twice"
        out[name] = str(SpecifierSet(str(req.specifier)))
    return out


def conda_requirements(specs) -> dict[str, str]:
    """{PyPI name: specifier} of conda match specs like ``pytorch>=2.1`` (python and pip left out)."""
    lines = []
    for spec in specs:
        if not isinstance(spec, str):
            continue  # the `pip:` section
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", spec)
        assert match, f"cannot read the conda spec {spec!r}"
        name, version = match.groups()
        if name in ("python", "pip"):
            continue
        assert not re.fullmatch(r"=[^=].*", version), f"{spec!r}: use PEP 440 operators (>=, ==), not conda's '='"
        lines.append(CONDA_TO_PYPI.get(name, name) + version)
    return requirements(lines)


def pip_file_requirements(path: Path) -> dict[str, str]:
    lines = [ln.split(" #")[0].strip() for ln in path.read_text().splitlines()]
    return requirements(ln for ln in lines if ln and not ln.startswith(("#", "-")))


def environment(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def binder_requirements() -> dict[str, str]:
    if (ROOT / "binder" / "environment.yml").exists():
        return conda_requirements(environment(ROOT / "binder" / "environment.yml")["dependencies"])
    return pip_file_requirements(ROOT / "binder" / "requirements.txt")


RUNTIME = requirements(PROJECT["dependencies"])


# ---------------------------------------------------------------- the lists agree
def test_runtime_dependencies_are_the_expected_ones():
    expected = {"torch", "diffusers", "transformers", "safetensors", "accelerate", "numpy", "pillow", "matplotlib",
                "ipywidgets", "jupyterlab", "tqdm", "voila"}
    assert set(RUNTIME) == expected


def test_torch_is_not_pinned_for_users():
    """Users keep the torch build they have (CUDA or not): only a lower bound."""
    spec = SpecifierSet(RUNTIME["torch"])
    assert spec, "give torch a lower bound"
    assert all(s.operator == ">=" for s in spec), spec


def test_environment_yml_lists_the_same_dependencies():
    env = environment(ROOT / "environment.yml")
    assert env["channels"] == ["conda-forge"]
    assert conda_requirements(env["dependencies"]) == RUNTIME
    pip_section = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert [line.split("#")[0].strip() for line in pip_section[0]] == ["-e ."], "install the package itself"


def test_binder_lists_the_same_dependencies():
    assert binder_requirements() == RUNTIME


@pytest.mark.parametrize("where", ["environment.yml", "binder"])
def test_python_version_agrees(where):
    requires = SpecifierSet(PROJECT["requires-python"])
    if where == "environment.yml":
        [python] = [d for d in environment(ROOT / where)["dependencies"] if isinstance(d, str) and d.startswith("python")]
        assert SpecifierSet(python.removeprefix("python")) == requires
    elif (ROOT / "binder" / "runtime.txt").exists():
        version = (ROOT / "binder" / "runtime.txt").read_text().strip().removeprefix("python-")
        assert Version(version) in requires


def test_a_drifted_list_is_noticed():
    """The comparison itself is not vacuous: a changed bound or a missing package differs."""
    drifted = dict(RUNTIME, diffusers=">=0.1")
    assert drifted != RUNTIME
    assert conda_requirements(["pytorch" + RUNTIME["torch"]]) == {"torch": RUNTIME["torch"]}
    assert requirements(["Pillow>=10.0"]) == {"pillow": ">=10.0"}
    with pytest.raises(AssertionError):
        conda_requirements(["numpy=1.24"])


def test_dev_extra_has_the_test_tools():
    dev = requirements(PROJECT["optional-dependencies"]["dev"])
    assert {"pytest", "nbval", "nbstripout", "pyyaml", "packaging"} <= set(dev)


# ---------------------------------------------------------------- binder conventions
def executable_script(path: Path, shebang: str = "#!") -> str:
    """The text of a script that must start with ``shebang`` and be executable (also in git)."""
    text = path.read_text()
    assert text.startswith(shebang), f"{path} must start with {shebang!r}"
    assert os.stat(path).st_mode & stat.S_IXUSR, f"{path} is not executable"
    rel = path.relative_to(ROOT).as_posix()
    tracked = subprocess.run(["git", "ls-files", "-s", rel], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode == 0 and tracked.stdout:
        assert tracked.stdout.startswith("100755"), f"commit {rel} as executable"
    return text


def test_binder_postbuild_installs_the_package_without_dependencies():
    text = executable_script(ROOT / "binder" / "postBuild")
    assert re.search(r"^set -e", text, re.M)
    assert re.search(r"^python -m pip install --no-deps -e \.$", text, re.M)


def test_binder_start_hands_over():
    start = ROOT / "binder" / "start"
    if not start.exists():
        pytest.skip("no binder/start")
    text = executable_script(start)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[-1] == 'exec "$@"'


# ---------------------------------------------------------------- package data
def package_data_patterns() -> list[str]:
    return PYPROJECT["tool"]["setuptools"]["package-data"]["diffedit_lab.toy"]


def test_model_folder_patterns_match_every_model_file(tmp_path):
    """Expanded the way setuptools expands package-data: glob(recursive=True) under the package."""
    for name in MODEL_FILES:
        (tmp_path / "model" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "model" / name).write_bytes(b"x")
    (tmp_path / "model" / "notes.tmp").write_bytes(b"x")  # not a model file
    found = {
        Path(p).relative_to(tmp_path / "model").as_posix()
        for pattern in package_data_patterns()
        for p in glob.glob(str(tmp_path / pattern), recursive=True)
    }
    assert found == set(MODEL_FILES)


@pytest.mark.slow
def test_wheel_contains_the_model_folder_and_the_console_script(tmp_path):
    """Build a real wheel from a copy of the project (with a stand-in model if none is there yet)."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    shutil.copytree(ROOT / "diffedit_lab", src / "diffedit_lab", ignore=ignore)
    model = src / "diffedit_lab" / "toy" / "model"
    shipped = sorted(p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file()) if model.is_dir() else []
    if not shipped:
        for name in MODEL_FILES:
            (model / name).parent.mkdir(parents=True, exist_ok=True)
            (model / name).write_bytes(b"stand-in")
        shipped = MODEL_FILES
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
         str(src)],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [wheel] = (tmp_path / "dist").glob("diffedit_lab-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = zf.read(entry_points).decode()
    wanted_suffixes = (".json", ".safetensors", ".txt", ".md")
    for name in shipped:
        if name.endswith(wanted_suffixes):
            assert f"diffedit_lab/toy/model/{name}" in names, name
    assert "diffedit_lab/cli.py" in names and "diffedit_lab/__main__.py" in names
    assert "diffedit_lab/bench/results/quality.json" in names  # notebook 07 reads it wherever it is opened
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)
    assert re.search(r"^diffedit-lab = diffedit_lab\.cli:main$", scripts, re.M), scripts


# ---------------------------------------------------------------- make, CI, notebooks tooling
def test_ci_runs_make_test():
    text = executable_script(ROOT / ".ci" / "run", "#!/usr/bin/env bash\n")
    assert re.search(r"^set -euo pipefail$", text, re.M)
    assert re.search(r"^make\b[^\n#]*\btest\b", text, re.M)


def make_dry_run(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("no make")
    proc = subprocess.run(["make", "-n", "--no-print-directory", *args, "VENV=/nonexistent-venv"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_test_creates_the_venv_installs_and_runs_pytest():
    out = make_dry_run("test", "CONSTRAINTS=constraints/cpu.txt")
    assert "-m venv /nonexistent-venv" in out
    assert "pip install -c constraints/cpu.txt" in out and "-e '.[dev]'" in out
    assert "-m pytest tests" in out
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if notebooks:
        assert "--nbval-lax" in out and "--nbval-current-env" in out
        assert "--nbval-sanitize-with .nbval-sanitize.cfg" in out
    else:
        assert "nbval" not in out.replace("no notebooks", "")


def test_make_lab_starts_jupyterlab_on_the_notebooks():
    out = make_dry_run("lab")
    assert re.search(r"jupyter lab --ServerApp.root_dir=notebooks", out)


def test_make_test_gpu_forces_cuda_and_fp16():
    out = make_dry_run("test-gpu")
    assert "DIFFEDIT_DEVICE=cuda DIFFEDIT_DTYPE=float16" in out


def test_cpu_constraints_pin_torch():
    lines = [ln for ln in (ROOT / "constraints" / "cpu.txt").read_text().splitlines() if ln.strip() and ln[0] != "#"]
    pins = requirements(lines)
    assert SpecifierSet(RUNTIME["torch"]).contains(pins["torch"].removeprefix("=="))
    assert pins["torch"].startswith("==")


def test_notebooks_are_stripped_by_nbstripout():
    attrs = (ROOT / ".gitattributes").read_text().splitlines()
    assert "*.ipynb filter=nbstripout" in attrs
    assert "*.ipynb diff=ipynb" in attrs


def test_nbval_sanitizers_parse_and_compile():
    nbval_plugin = pytest.importorskip("nbval.plugin")
    patterns = nbval_plugin.get_sanitize_patterns((ROOT / ".nbval-sanitize.cfg").read_text())
    assert len(patterns) >= 5
    for regex, _ in patterns:
        re.compile(regex)

    def sanitize(text):
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    assert sanitize("edit:  40%|████      | 4/10 [00:01<00:02,  2.9it/s]") == "edit:  PROGRESS"
    assert sanitize("<Foo at 0x7f3a2c1d9e50> took 1.5 s, 12 steps") == "<Foo at 0xADDRESS> took DURATION, 12 steps"
    assert sanitize("tensor([1.], device='cuda:0')") == sanitize("tensor([1.], device='cpu')")
