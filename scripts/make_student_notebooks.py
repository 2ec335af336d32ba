"""Student versions of the exercise notebooks, made by nbgrader's ``ClearSolutions`` preprocessor.

Each ``notebooks/exercises/solutions/NAME.ipynb`` (the source: edit it in JupyterLab) becomes
``notebooks/exercises/NAME.ipynb``: every region between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` is replaced by ``raise NotImplementedError()``, outputs are cleared.
Nothing else changes; the script does no editing of its own.

    python scripts/make_student_notebooks.py           # write the student versions
    python scripts/make_student_notebooks.py --check   # exit 1 if a committed one is out of date

tests/test_notebook_conventions.py runs the check.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "notebooks" / "exercises"
SOLUTIONS = EXERCISES / "solutions"


def student_version(solution: Path) -> nbformat.NotebookNode:
    """The student version of one solution notebook (outputs cleared, solutions replaced by stubs)."""
    from nbconvert.preprocessors import ClearOutputPreprocessor
    from nbgrader.preprocessors import ClearSolutions

    nb = nbformat.read(solution, as_version=4)
    nb, _ = ClearOutputPreprocessor().preprocess(copy.deepcopy(nb), {})
    nb, _ = ClearSolutions().preprocess(nb, {})
    return nb


def pairs():
    """(solution, student) paths of every exercise."""
    solutions = sorted(SOLUTIONS.glob("*.ipynb"))
    if not solutions:
        sys.exit(f"make_student_notebooks: no solution notebook in {SOLUTIONS}")
    return [(s, EXERCISES / s.name) for s in solutions]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the committed student versions")
    args = parser.parse_args(argv)
    stale = []
    for solution, student in pairs():
        text = nbformat.writes(student_version(solution)) + "\n"
        if args.check:
            if not student.exists() or student.read_text(encoding="utf-8") != text:
                stale.append(student.relative_to(ROOT))
        else:
            student.write_text(text, encoding="utf-8")
            print(f"{solution.relative_to(ROOT)} -> {student.relative_to(ROOT)}")
    if stale:
        print("out of date (run python scripts/make_student_notebooks.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
