"""Notebook 07 opened from a copy (Colab, a student's folder) shows the committed results, never a
smoke run passed off as them (issue 18)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from diffedit_lab.bench import claims, quality_report

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "07_evaluation.ipynb"


def test_packaged_copy_is_read_when_the_repository_is_not_there(monkeypatch, tmp_path):
    monkeypatch.setattr(quality_report, "REPOSITORY_RESULTS", tmp_path / "absent" / "results.json")
    results, where = quality_report.committed_results()
    assert "packaged" in where
    assert results == json.loads((ROOT / "docs" / "results" / "quality" / "results.json").read_text())


def outputs(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


@pytest.mark.slow
def test_notebook_07_from_a_copy_shows_the_committed_numbers(tmp_path):
    nbclient = pytest.importorskip("nbclient")
    copy = tmp_path / "student" / "07_evaluation.ipynb"
    copy.parent.mkdir()
    shutil.copy(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(copy.parent)}}).execute()
    committed = quality_report.load_results(quality_report.REPOSITORY_RESULTS)
    s = committed["settings"]
    text = "\n".join(outputs(c) for c in nb.cells if c.cell_type == "code")
    assert "The committed full run" in text and "RECOMPUTING" not in text
    assert f"{s['edits']} edits, {s['steps']} DDIM steps" in text
    verdicts = next(outputs(c) for c in nb.cells if c.source.startswith("# NBVAL_CHECK_OUTPUT"))
    expected = "".join(f"{'holds' if k.holds else 'does NOT hold':>13}: {k.statement}\n" for k in claims.claims(committed))
    assert verdicts == expected
