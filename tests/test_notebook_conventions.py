"""What every notebook shares, now that the .ipynb files are their own source (README: "Working on
the notebooks"): the Colab and Binder badges in the title cell, pointing at the notebook itself;
the Colab install cell, the same everywhere; the set-up cell. And: no notebook generator is left,
the exercises' student versions are what nbgrader's ClearSolutions makes of the solutions, notebook
07 types none of its results, notebooks 02–04 write the step they teach and compare it with the library.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "notebooks" / "exercises").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "exercises" / "solutions").glob("*.ipynb"))
ALL = NOTEBOOKS + EXERCISES + SOLUTIONS
SETUP_LINES = ("import diffedit_lab as dl", "device = dl.default_device()", "dl.set_threads(")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def opened_path(path: Path) -> str:
    """The notebook a badge should open: a solution's badge opens the student version."""
    return rel(path.parent.parent / path.name) if path.parent.name == "solutions" else rel(path)


def read(path: Path):
    return nbformat.read(path, as_version=4)


def badge_problems(nb, path: str) -> list[str]:
    first = nb.cells[0]
    if first.cell_type != "markdown" or not first.source.startswith("# "):
        return ["the first cell must be the markdown title"]
    wanted = {
        "Colab": f"https://colab.research.google.com/github/diffedit-lab/diffedit-lab/blob/main/{path}",
        "Binder": f"https://mybinder.org/v2/gh/diffedit-lab/diffedit-lab/HEAD?urlpath=lab/tree/{path}",
    }
    return [f"no {name} badge opening {url}" for name, url in wanted.items() if f"]({url})" not in first.source]


def colab_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and "colab" in c.metadata.get("tags", [])]


def setup_problems(nb) -> list[str]:
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%matplotlib inline")]
    if len(cells) != 1:
        return [f"{len(cells)} set-up cells (a code cell starting with %matplotlib inline); expected one"]
    return [f"the set-up cell lacks `{line}`" for line in SETUP_LINES if line not in cells[0].source]


def test_there_are_notebooks_and_exercises():
    assert len(NOTEBOOKS) >= 8 and len(EXERCISES) >= 4 and len(SOLUTIONS) == len(EXERCISES)


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_title_cell_has_badges_to_itself(path):
    assert badge_problems(read(path), opened_path(path)) == []


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_colab_install_cell_is_the_shared_one(path):
    [reference] = colab_cells(read(NOTEBOOKS[0]))
    cells = colab_cells(read(path))
    assert len(cells) == 1, "one code cell tagged `colab`"
    assert cells[0].source == reference.source, "the Colab install cell differs from notebook 00's"
    assert nbformat.read(path, as_version=4).cells.index(cells[0]) == 1, "the Colab cell comes right after the title"


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_setup_cell(path):
    assert setup_problems(read(path)) == []


def test_the_checks_notice_a_broken_notebook():
    nb = copy.deepcopy(read(NOTEBOOKS[0]))
    path = opened_path(NOTEBOOKS[0])
    nb.cells[0].source = nb.cells[0].source.replace(path, "notebooks/elsewhere.ipynb")
    assert len(badge_problems(nb, path)) == 2
    setup = next(c for c in nb.cells if c.source.startswith("%matplotlib inline"))
    setup.source = setup.source.replace("import diffedit_lab as dl", "import diffedit_lab")
    assert setup_problems(nb) == ["the set-up cell lacks `import diffedit_lab as dl`"]


def test_no_notebook_generator_remains():
    assert sorted(p.name for p in (ROOT / "scripts").glob("make_notebook*.py")) == []
    for doc in [ROOT / "README.md", ROOT / "Makefile"]:
        assert "make_notebooks.py" not in doc.read_text() and "make_notebook_07" not in doc.read_text()


def load_script():
    spec = importlib.util.spec_from_file_location("make_student_notebooks", ROOT / "scripts" / "make_student_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("solution", SOLUTIONS, ids=rel)
def test_student_version_is_what_clear_solutions_makes(solution):
    script = load_script()
    made = script.student_version(solution)
    committed = read(ROOT / "notebooks" / "exercises" / solution.name)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in made.cells], (
        "out of date: run python scripts/make_student_notebooks.py")
    solution_cells = [c for c in read(solution).cells if "### BEGIN SOLUTION" in c.source]
    assert solution_cells, "a solution notebook without a solution region"
    for cell in solution_cells:
        assert cell.metadata.get("nbgrader", {}).get("solution"), "mark solution cells for nbgrader"
    stubs = [c for c in committed.cells if "raise NotImplementedError()" in c.source]
    assert len(stubs) == len(solution_cells)
    assert not any("BEGIN SOLUTION" in c.source for c in committed.cells)


def test_notebook_07_types_none_of_its_results():
    nb = read(ROOT / "notebooks" / "07_evaluation.ipynb")
    typed = [m.group(0) for c in nb.cells if c.cell_type == "markdown"
             for m in re.finditer(r"\d+(\.\d+)?\s*(%|dB\b)|IoU\s+(of\s+)?\d", c.source)]
    assert typed == [], f"results typed in markdown: {typed}"
    numbers = [c for c in nb.cells if c.cell_type == "code" and "(a) background PSNR" in c.source]
    assert numbers and "results[" in numbers[0].source


@pytest.mark.parametrize("name", ["02_mask", "03_inversion", "04_masked_denoising"])
def test_teaching_notebooks_write_the_step_and_compare_it_with_the_library(name):
    cells = [c.source for c in read(ROOT / "notebooks" / f"{name}.ipynb").cells if c.cell_type == "code"]
    assert any(re.search(r"^assert .*(torch\.equal|torch\.allclose)", s, re.M) for s in cells), (
        f"{name}: no cell writes the step in a few lines and asserts it equals the library")


def test_teaching_guide_times_every_notebook_and_is_linked():
    guide = (ROOT / "docs" / "teaching.md").read_text()
    assert "docs/teaching.md" in (ROOT / "README.md").read_text()
    for path in NOTEBOOKS + EXERCISES:
        link = "../" + rel(path)
        rows = [line for line in guide.splitlines() if f"]({link})" in line and line.startswith("|")]
        assert rows, f"docs/teaching.md has no row for {rel(path)}"
        assert re.search(r"\| \d+(\.\d)? s \| \d+(\.\d)? s \|$", rows[0]), f"no measured times in: {rows[0]}"
    assert re.search(r"peak memory was\s+\*?\*?\d+ MB", guide)
