"""The quality bench's two new paths give the direct run's results: the same edits read from a
PIE-Bench folder (``--dataset``), and the edits split between two processes by
``accelerate launch`` (CPU, gloo). Quick mode, tiny random model: the figures mean nothing, their
equality does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from diffedit_lab.bench.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def quick(model, out, *extra):
    return ["quality", "--quick", "--edits", "4", "--steps", "3", "--batch", "2", "--model", str(model),
            "--out", str(out), "--no-progress", *extra]


def same_results(a: Path, b: Path, ignore=("timing",)) -> list[str]:
    """The results.json sections that differ (NaN-safe: compared as JSON text)."""
    ra, rb = (json.loads((p / "results.json").read_text()) for p in (a, b))
    return [k for k in sorted(set(ra) | set(rb)) if k not in ignore
            and json.dumps(ra.get(k), sort_keys=True) != json.dumps(rb.get(k), sort_keys=True)]


@pytest.fixture(scope="module")
def direct(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("direct")
    assert main(quick(tiny_model_dir, out)) == 0
    return out


def test_dataset_path_gives_the_direct_rows(direct, tiny_model_dir, tmp_path):
    from diffedit_lab.toy import export_bench

    export_bench.main([str(tmp_path / "pie"), "--edits", "4", "--world", "classic"])
    out = tmp_path / "via_dataset"
    assert main(quick(tiny_model_dir, out, "--dataset", str(tmp_path / "pie"))) == 0
    assert (out / "rows.jsonl").read_text() == (direct / "rows.jsonl").read_text()
    assert same_results(direct, out) == ["settings"]  # it records the dataset folder, nothing else differs
    s = json.loads((out / "results.json").read_text())["settings"]
    assert s["dataset"] == str(tmp_path / "pie") and set(s["learned_metrics"]) == {"lpips", "clip_score"}
    row = json.loads((out / "rows.jsonl").read_text().splitlines()[0])
    for k in ("psnr_unedited", "mse_unedited", "ssim_unedited", "mask_precision", "mask_recall"):
        assert k in row


def test_dataset_without_the_shapes_world_keys_is_scored_without_the_checker(tiny_model_dir, tmp_path):
    from diffedit_lab.toy import export_bench

    folder = tmp_path / "pie"
    export_bench.main([str(folder), "--edits", "2", "--world", "classic"])
    mapping = json.loads((folder / "mapping_file.json").read_text())
    for item in mapping.values():
        del item["shapes_world"]  # a real PIE-Bench entry: no pixel checker
    (folder / "mapping_file.json").write_text(json.dumps(mapping))
    out = tmp_path / "out"
    argv = ["quality", "--quick", "--edits", "2", "--steps", "2", "--batch", "2", "--model", str(tiny_model_dir),
            "--out", str(out), "--no-progress", "--dataset", str(folder)]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["by_kind"]) == {"change object", "change attribute (color)"}
    v = res["methods"]["diffedit"]["0.8"]
    assert v["edit_success"] != v["edit_success"]  # NaN: no checker on real images
    assert 0 < v["psnr_unedited"] <= 100 and v["mse_unedited"] >= 0 and -1 <= v["ssim_unedited"] <= 1
    assert 0 <= v["mask_recall"] <= 1


def test_bad_dataset_fails_before_any_model_call(tmp_path, capsys):
    with pytest.raises(SystemExit, match="mapping_file.json"):
        main(["quality", "--quick", "--dataset", str(tmp_path)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_accelerate_two_processes_give_the_one_process_results(direct, tiny_model_dir, tmp_path):
    """``accelerate launch`` with two processes on the CPU. accelerate 1.x's ``--cpu
    --num_processes 2`` starts ONE process unless MPI is set up (its launcher needs
    ``--mpirun_hostfile``); ``--multi_gpu`` starts them with torchrun, and on a machine without
    CUDA the bench joins them on the CPU with gloo (``quality.process_state``)."""
    out = tmp_path / "two"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", ACCELERATE_USE_CPU="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "diffedit_lab.bench", *quick(tiny_model_dir, out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["timing"]["processes"] == 2 and len(res["timing"]["parts"]) == 2  # it was split
    assert same_results(direct, out) == []
    assert (out / "rows.jsonl").read_text() == (direct / "rows.jsonl").read_text()
