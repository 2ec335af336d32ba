"""LPIPS of the bench (issue 15; diffedit_lab/bench/lpips.py): computed only when its two weight
files are on the machine — torchvision's cached SqueezeNet 1.1 file in the torch hub folder and
LPIPS's linear layers — and skipped with the missing file named otherwise; nothing downloaded.

Random weights stand in for the real ones (written in torchvision's and the lpips package's key
layouts, to a temporary TORCH_HOME). The reference values of ``test_matches_the_reference_
implementation`` were measured with the reference implementations themselves (lpips 0.1.4 and
torchmetrics 1.9.0 with torchvision 0.28, torch 2.13, in a scratch virtual environment, on these
very files and images) by scripts/check_lpips_reference.py."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from diffedit_lab.bench import lpips as L
from diffedit_lab.bench import pie

from conftest import quick_pie_bench


def write_random_weights(torch_home: Path, lin_file: Path, seed: int = 0) -> tuple[Path, Path]:
    """Random SqueezeNet 1.1 weights as torchvision caches them (``features.*`` and its classifier)
    in ``torch_home/hub/checkpoints/``, and random non-negative linear layers as the lpips package
    ships them (``lin{l}.model.1.weight``, (1, C, 1, 1)) in ``lin_file``. numpy's PCG64 with
    ``seed``: the same numbers on every machine."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in L.LPIPS().features.state_dict().items():
        shape = tuple(value.shape)
        if key.endswith("weight"):
            fan_in = int(np.prod(shape[1:]))
            state[f"features.{key}"] = torch.tensor(rng.standard_normal(shape) * math.sqrt(2 / fan_in), dtype=torch.float32)
        else:
            state[f"features.{key}"] = torch.tensor(rng.standard_normal(shape) * 0.1, dtype=torch.float32)
    state["classifier.1.weight"] = torch.tensor(rng.standard_normal((1000, 512, 1, 1)) * 0.01, dtype=torch.float32)
    state["classifier.1.bias"] = torch.zeros(1000)
    backbone = torch_home / "hub" / "checkpoints" / L.BACKBONE_FILE
    backbone.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, backbone)
    lins = {f"lin{i}.model.1.weight": torch.tensor(rng.random((1, c, 1, 1)), dtype=torch.float32)
            for i, c in enumerate(L.CHANNELS)}
    lin_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(lins, lin_file)
    return backbone, lin_file


def reference_images() -> list[np.ndarray]:
    """Three (40, 56, 3) uint8 images: two random, one the first with a changed block."""
    rng = np.random.default_rng(7)
    a, b = (rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(2))
    c = a.copy()
    c[10:30, 20:44] = 255 - c[10:30, 20:44]
    return [a, b, c]


def reference_mask() -> np.ndarray:
    m = np.zeros((40, 56), bool)
    m[8:24, 16:40] = True
    return m


def to_input(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 → (1, 3, H, W) in [−1, 1]."""
    return torch.tensor(image.astype(np.float32) / 255).permute(2, 0, 1)[None] * 2 - 1


@pytest.fixture
def no_network(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, *a))


@pytest.fixture
def weights(tmp_path, monkeypatch, no_network) -> tuple[Path, Path]:
    """Random weight files in a temporary TORCH_HOME (the hub folder moves with it)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert Path(torch.hub.get_dir()) == tmp_path / "torch" / "hub"  # nobody pinned the hub folder elsewhere
    return write_random_weights(tmp_path / "torch", tmp_path / "lin" / "squeeze.pth")


@pytest.fixture
def empty_hub(tmp_path, monkeypatch, no_network) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    return tmp_path / "empty" / "hub" / "checkpoints" / L.BACKBONE_FILE


def test_status_says_computed_and_names_both_files(weights):
    backbone, lin = weights
    status = pie.learned_metrics("none", str(lin))["lpips"]
    assert status.startswith("computed: ") and str(backbone) in status and str(lin) in status
    model = pie.lpips_scorer(str(lin))
    assert isinstance(model, L.LPIPS) and model.files == (str(backbone), str(lin))


def test_lpips_is_a_distance_and_deterministic(weights):
    model = L.load_lpips(weights[1])
    a, b, c = (to_input(x) for x in reference_images())
    assert float(model(a, a)[0]) == 0.0
    ab, ba, ac = (float(model(x, y)[0]) for x, y in ((a, b), (b, a), (a, c)))
    assert all(math.isfinite(v) and v > 0 for v in (ab, ba, ac))
    assert ab == pytest.approx(ba, rel=1e-6)
    assert ac < ab  # a block changed is nearer than another random image
    again = L.load_lpips(weights[1])
    assert float(again(a, b)[0]) == ab and float(model(a, b)[0]) == ab
    both = model(torch.cat([a, a]), torch.cat([b, c]))  # a batch gives each pair's distance
    assert both.shape == (2,) and both.tolist() == pytest.approx([ab, ac], rel=1e-5)


def test_lpips_is_the_equation_layer_by_layer(weights):
    """Σ_l mean_hw ‖w_l ⊙ (ŷ_l − ŷ0_l)‖² by hand, from the backbone's seven layers."""
    model = L.load_lpips(weights[1])
    a, b = (to_input(x) for x in reference_images()[:2])
    scale = lambda x: (x - torch.tensor(L.SHIFT).view(1, 3, 1, 1)) / torch.tensor(L.SCALE).view(1, 3, 1, 1)  # noqa: E731
    fa, fb = model.layers(scale(a)), model.layers(scale(b))
    assert [f.shape[1] for f in fa] == list(L.CHANNELS)
    total = 0.0
    for lin, f, g in zip(model.lins, fa, fb):
        ya = f / (f.pow(2).sum(1, keepdim=True).sqrt() + L.EPS)
        yb = g / (g.pow(2).sum(1, keepdim=True).sqrt() + L.EPS)
        w = lin.weight[0, :, 0, 0].view(1, -1, 1, 1)
        total += float((w * (ya - yb) ** 2).sum(1).mean())
    assert float(model(a, b)[0]) == pytest.approx(total, rel=1e-5)


# Measured by scripts/check_lpips_reference.py with lpips 0.1.4 (lpips.LPIPS(net="squeeze",
# model_path=<lin file>)) and torchmetrics 1.9.0 (PIE-Bench's calculate_lpips, its own packaged
# linear layers replaced by the same file), torchvision 0.28 reading the backbone file from the
# same TORCH_HOME: LPIPS(a, b), LPIPS(a, c), and PIE-Bench's lpips_unedit_part of (a, b), (a, c).
REFERENCE = dict(ab=0.810551524, ac=0.333525717, unedited_ab=0.69196552, unedited_ac=0.149845004)


def test_matches_the_reference_implementation(weights):
    model = L.load_lpips(weights[1])
    a, b, c = reference_images()
    ours = dict(ab=float(model(to_input(a), to_input(b))[0]), ac=float(model(to_input(a), to_input(c))[0]),
                unedited_ab=pie.lpips_unedited(model, a, b, reference_mask()),
                unedited_ac=pie.lpips_unedited(model, a, c, reference_mask()))
    assert ours == pytest.approx(REFERENCE, rel=1e-5, abs=1e-6)


def test_unedited_region_is_pie_benchs_masking(weights):
    """Both images × (1 − mask) (float32, /255), then LPIPS of 2x − 1: their calculate_lpips."""
    model = L.load_lpips(weights[1])
    a, b, _ = reference_images()
    mask = reference_mask()
    inside = a.copy()
    inside[mask] = b[mask]  # changed only inside the edited region
    assert pie.lpips_unedited(model, a, inside, mask) == 0.0
    keep = (1 - mask.astype(np.float32))[..., None]
    xa, xb = (torch.tensor(x.astype(np.float32) / 255 * keep).permute(2, 0, 1)[None] * 2 - 1 for x in (a, b))
    assert pie.lpips_unedited(model, a, b, mask) == pytest.approx(float(model(xa, xb)[0]), rel=1e-6)
    assert pie.lpips_unedited(model, a, b, mask) != pytest.approx(float(model(to_input(a), to_input(b))[0]), rel=1e-3)
    assert math.isnan(pie.lpips_unedited(model, a, b, np.ones_like(mask)))  # nothing unedited: their "nan"


def test_a_row_gets_lpips_on_the_unedited_region(weights):
    from types import SimpleNamespace

    from diffedit_lab.bench.quality_run import Job, _row

    a, b, c = reference_images()
    e = pie.DatasetEdit("0", SimpleNamespace(image=a), "a cat", "a dog", reference_mask(), "change object")
    model = pie.lpips_scorer(str(weights[1]))
    for out in (b, c):
        row = _row(Job("sdedit", 0.8), e, 0, out, None, lpips_weights=str(weights[1]))
        assert row["lpips_unedited"] == pie.lpips_unedited(model, a, out, e.mask)
    assert "lpips_unedited" not in _row(Job("sdedit", 0.8), e, 0, b, None)  # off unless asked (lpips_weights="none")


def test_missing_backbone_is_skipped_naming_the_file(empty_hub, tmp_path):
    lin = tmp_path / "lin.pth"
    torch.save({f"lin{i}.model.1.weight": torch.ones(1, c, 1, 1) for i, c in enumerate(L.CHANNELS)}, lin)
    status = pie.learned_metrics("none", str(lin))["lpips"]
    assert status.startswith("skipped: ") and str(empty_hub) in status and "TORCH_HOME" in status
    assert "nothing is downloaded" in status and str(lin) not in status  # the file that is there is not blamed
    assert pie.learned_row(reference_images()[0], "a cat", reference_mask(), "none", source=reference_images()[1],
                           lpips_weights=str(lin)) == {}


def test_missing_linear_layers_are_skipped_naming_where_they_were_looked_for(weights, tmp_path, monkeypatch):
    backbone, _ = weights
    gone = tmp_path / "nowhere" / "squeeze.pth"
    status = pie.lpips_status(str(gone))
    assert status.startswith("skipped: ") and str(gone) in status and str(backbone) not in status
    # no file given: the installed packages' copies are looked for, each named
    monkeypatch.setattr(L, "packaged_lin_files", lambda: [("lpips", None), ("torchmetrics", tmp_path / "tm" / "squeeze.pth")])
    status = pie.lpips_status(None)
    assert "lpips: not installed" in status and f"{tmp_path / 'tm' / 'squeeze.pth'}: not there" in status
    assert "--lpips-weights FILE" in status
    assert pie.lpips_status("none") == "skipped: turned off (--lpips-weights none)"


def test_packaged_linear_layers_are_found_where_the_packages_keep_them(weights, tmp_path, monkeypatch):
    """An installed lpips or torchmetrics is found by its import path, without importing it;
    the lpips package's copy first."""
    _, lin = weights
    fake = tmp_path / "site"
    in_tm = fake / "torchmetrics" / "functional" / "image" / "lpips_models" / "squeeze.pth"
    in_lpips = fake / "lpips" / "weights" / "v0.1" / "squeeze.pth"
    for package in ("lpips", "torchmetrics"):
        (fake / package).mkdir(parents=True)
        (fake / package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    in_tm.parent.mkdir(parents=True)
    in_tm.write_bytes(lin.read_bytes())
    monkeypatch.syspath_prepend(str(fake))
    assert dict(L.packaged_lin_files()) == {"lpips": in_lpips, "torchmetrics": in_tm}
    assert L.find_weights(None)[1] == in_tm  # lpips's copy is not there
    assert pie.lpips_status(None).startswith("computed: ") and str(in_tm) in pie.lpips_status(None)
    in_lpips.parent.mkdir(parents=True)
    in_lpips.write_bytes(lin.read_bytes())
    assert L.find_weights(None)[1] == in_lpips


def test_a_foreign_file_is_an_error_not_random_weights(weights, tmp_path):
    backbone, lin = weights
    bad = tmp_path / "bad.pth"
    torch.save({"lin0.weight": torch.ones(1, 64, 1, 1)}, bad)
    with pytest.raises(LookupError, match="linear layers lin0…lin6"):
        L.load_lpips(bad)
    assert pie.lpips_status(str(bad)).startswith(f"skipped: {bad} could not be loaded")
    torch.save({"features.0.weight": torch.ones(3)}, backbone)  # not SqueezeNet 1.1
    with pytest.raises(LookupError, match="SqueezeNet 1.1's weights"):
        L.load_lpips(lin)
    with pytest.raises(ValueError, match="at least 17×17"):
        L.LPIPS()(torch.zeros(1, 3, 16, 40), torch.zeros(1, 3, 16, 40))


def test_quick_bench_on_a_pie_bench_folder_writes_lpips_rows(weights, tiny_model_dir, pie_bench_folder, tmp_path):
    _, lin = weights
    res = quick_pie_bench(tiny_model_dir, pie_bench_folder, tmp_path / "out", "--clip-model", "none",
                          "--lpips-weights", str(lin))
    assert res["settings"]["lpips_weights"] == str(lin)
    assert res["settings"]["learned_metrics"]["lpips"].startswith("computed: ")
    rows = [json.loads(line) for line in (tmp_path / "out" / "rows.jsonl").read_text().splitlines()]
    edits = pie.read_dataset(pie_bench_folder)
    model = pie.lpips_scorer(str(lin))
    assert rows and all(math.isfinite(r["lpips_unedited"]) and r["lpips_unedited"] >= 0 for r in rows)
    assert len({round(r["lpips_unedited"], 6) for r in rows}) > 1  # the outputs differ, so do their distances
    for kind, methods in res["by_kind"].items():
        mine = [r["lpips_unedited"] for r in rows if r["kind"] == kind and r["method"] == "diffedit" and r["r"] == 0.8
                and r["variant"] is None]
        assert methods["diffedit"]["0.8"]["lpips_unedited"] == pytest.approx(np.mean(mine))
    assert res["methods"]["diffedit"]["0.8"]["lpips_unedited_se"] >= 0
    assert pie.lpips_unedited(model, edits[0].scene.image, edits[0].scene.image, edits[0].mask) == 0.0
