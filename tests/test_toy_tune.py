"""The settings search of diffedit_lab.toy.tune, on the tiny random model (numbers are
meaningless there; what is checked is that each figure is what it claims to be)."""

import json

import numpy as np
import pytest
from PIL import Image

from diffedit_lab import noise_diff_mask
from diffedit_lab.metrics import mask_iou
from diffedit_lab.toy import tune
from diffedit_lab.toy.world import KINDS, make_edit


def test_validation_edits_alternate_kinds_and_are_held_out():
    edits = tune.validation_edits(4)
    assert [e.kind for e in edits] == ["shape", "colour", "shape", "colour"]
    assert edits[1].source == make_edit(tune.VALIDATION_SEED + 1, "colour").source


def test_mask_ious_are_the_mean_iou_of_each_setting_best_first(tiny_components):
    edits = tune.validation_edits(2)
    grid = dict(mask_noise=(0.3, 0.6), clamp_ratio=(2.0, 4.0), threshold=(0.3, 0.7), fill_holes=(False, True))
    rows = tune.mask_ious(tiny_components, edits, guidance=3.0, n=2, grid=grid, progress=False)
    assert len(rows) == 16 and [r["mask_iou"] for r in rows] == sorted((r["mask_iou"] for r in rows), reverse=True)
    for fill in (False, True):
        row = next(r for r in rows if r["mask_noise"] == 0.6 and r["clamp_ratio"] == 4.0 and r["threshold"] == 0.7
                   and r["fill_holes"] is fill)
        direct = []
        for i, e in enumerate(edits):
            m = noise_diff_mask(tiny_components, Image.fromarray(e.scene.image), e.source, e.target, n=2, mask_noise=0.6,
                                guidance=3.0, clamp_ratio=4.0, threshold=0.7, fill_holes=fill, seed=i, progress=False)
            direct.append(float(mask_iou(m.upsampled((64, 64))[0].numpy(), e.mask)))
        assert row["mask_iou"] == np.mean(direct)


def test_main_writes_the_best_settings_and_keeps_the_others(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "diffedit_lab.json").write_text(json.dumps({"n": 2, "clamp_ratio": 3.0, "steps": 7, "strength": 0.7}))
    monkeypatch.setattr(tune, "MASK_GRID", dict(mask_noise=(0.5,), clamp_ratio=(4.0,), threshold=(0.6,),
                                               rescale=("range",), fill_holes=(True,)))
    monkeypatch.setattr(tune, "EDIT_GRID", dict(guidance=(2.0,), encoding_ratio=(0.5,)))
    tune.main(["--model", str(folder), "--edits", "2", "--mask-edits", "2", "--steps", "2", "--write"])
    written = json.loads((folder / "diffedit_lab.json").read_text())
    best = {k: written.pop(k) for k in ("mask_noise", "clamp_ratio", "threshold", "rescale", "fill_holes",
                                           "guidance", "encoding_ratio")}
    assert written == {"n": 2, "steps": 7}  # the others are kept; the old name "strength" gives way
    assert tune.PAPER_MASK["rescale"] == "mean"  # so the two masks scored differ in their rescale
    assert best in (dict(mask_noise=0.5, clamp_ratio=4.0, threshold=0.6, rescale="range", fill_holes=True,
                         guidance=2.0, encoding_ratio=0.5),
                    dict(tune.PAPER_MASK, guidance=2.0, encoding_ratio=0.5))
    out = capsys.readouterr().out
    assert out.count("  2.0  0.50") == 2  # both masks were scored with the one grid point


def test_rich_validation_edits_take_every_kind_in_turn():
    edits = tune.validation_edits(12, "rich", 32)
    assert [e.kind for e in edits] == list(KINDS) * 2 and edits[0].scene.image.shape == (32, 32, 3)
    assert edits[3].target == make_edit(tune.VALIDATION_SEED + 3, "background", world="rich", size=32).target


def test_choose_steps_takes_the_fewest_steps_near_the_best():
    def row(steps, success, iou):
        return dict(steps=steps, edit_success=success, mask_iou=iou)

    rows = [row(10, 0.70, 0.60), row(20, 0.83, 0.645), row(30, 0.85, 0.66), row(50, 0.86, 0.65)]
    assert tune.choose_steps(rows) == 30  # 20 is 3 points below the best success (86 %)
    assert tune.choose_steps(rows, success_tolerance=0.05) == 20
    assert tune.choose_steps(rows, success_tolerance=0.2, iou_tolerance=0.1) == 10
    # none within both: the best success wins
    assert tune.choose_steps([row(10, 0.9, 0.3), row(50, 0.5, 0.7)]) == 10


def test_steps_curve_writes_one_row_per_step_count(tiny_model_dir, tmp_path, capsys):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "diffedit_lab.json").write_text(json.dumps({"n": 2, "steps": 7, "strength": 0.7}))
    out = tmp_path / "curve"
    tune.main(["--model", str(folder), "--world", "rich", "--steps-curve", "4", "2", "--edits", "6", "--out", str(out),
               "--write", "--no-progress"])
    report = json.loads((out / "steps_curve.json").read_text())
    assert [r["steps"] for r in report["rows"]] == [2, 4] and all(r["edits"] == 6 for r in report["rows"])
    assert report["world"] == "rich" and report["kinds"] == sorted(KINDS)
    for r in report["rows"]:
        assert set(tune.CURVE_KEYS) <= set(r) and r["seconds_per_edit"] > 0 and 0 <= r["mask_iou"] <= 1
        assert {f"success_{k}" for k in KINDS} <= set(r)
    assert report["chosen"] == tune.choose_steps(report["rows"])
    png = (out / "steps_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads((folder / "diffedit_lab.json").read_text())
    assert written == {"n": 2, "steps": report["chosen"], "encoding_ratio": 0.7}  # the others kept, old name renamed
    text = capsys.readouterr().out
    assert len([line for line in text.splitlines() if line.strip()[:1].isdigit()]) == 2  # one table row per count


def test_steps_curve_refuses_bad_counts():
    import pytest

    with pytest.raises(SystemExit):
        tune.main(["--steps-curve", "10", "0"])
    with pytest.raises(SystemExit):
        tune.main(["--steps-curve", "10", "10"])


def test_mask_ious_give_each_kind_when_the_edits_are_of_several(tiny_components):
    edits = [e for e in tune.validation_edits(6, "rich", 64) if e.kind in ("colour", "background")]
    grid = dict(mask_noise=(0.5,), clamp_ratio=(3.0,), threshold=(0.5,), fill_holes=(False,))
    rows = tune.mask_ious(tiny_components, edits, guidance=3.0, n=2, grid=grid, progress=False)
    direct = {}
    for i, e in enumerate(edits):
        m = noise_diff_mask(tiny_components, Image.fromarray(e.scene.image), e.source, e.target, n=2, mask_noise=0.5,
                            guidance=3.0, clamp_ratio=3.0, threshold=0.5, seed=i, progress=False)
        direct.setdefault(e.kind, []).append(float(mask_iou(m.upsampled((64, 64))[0].numpy(), e.mask)))
    (row,) = rows
    assert row["mask_iou_colour"] == np.mean(direct["colour"]) and row["mask_iou_background"] == np.mean(direct["background"])
    assert row["mask_iou"] == np.mean(direct["colour"] + direct["background"])
    table = tune.format_masks(rows)
    assert table.splitlines()[0].split()[-2:] == ["colour", "background"] and len(table.splitlines()) == 2


def test_the_two_stages_take_the_models_world(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    seen = []
    real = tune.mask_ious
    monkeypatch.setattr(tune, "mask_ious", lambda c, edits, **k: seen.extend(edits) or real(c, edits, **k))
    monkeypatch.setattr(tune, "MASK_GRID", dict(mask_noise=(0.5,), clamp_ratio=(3.0,), threshold=(0.5,),
                                               fill_holes=(False,)))
    monkeypatch.setattr(tune, "EDIT_GRID", dict(guidance=(2.0,), encoding_ratio=(0.5,)))
    tune.main(["--model", str(folder), "--world", "rich", "--edits", "1", "--mask-edits", "6", "--steps", "2",
               "--no-progress"])
    assert [e.kind for e in seen] == list(KINDS) and all(e.scene.world == "rich" for e in seen)
    assert "validation edits of the rich world (--world)" in capsys.readouterr().out


def test_the_mask_grid_tries_both_rescales_and_range_without_clamping():
    assert set(tune.MASK_GRID["rescale"]) == {"mean", "range"} and max(tune.MASK_GRID["clamp_ratio"]) >= 100
    assert tune.PAPER_MASK == dict(mask_noise=0.5, clamp_ratio=3.0, threshold=0.5, rescale="mean", fill_holes=False,
                                   close=0)
    assert set(tune.MASK_GRID["close"]) == {0, 1, 2}  # 2: on 32×32 latents the 8-px gaps that 1 closes on 16×16


def test_mask_ious_score_each_closing_as_noise_diff_mask_makes_it(tiny_components):
    edits = tune.validation_edits(2)
    grid = dict(mask_noise=(0.6,), clamp_ratio=(100.0,), threshold=(0.4,), rescale=("range",),
                fill_holes=(True,), close=(0, 1))
    rows = tune.mask_ious(tiny_components, edits, guidance=3.0, n=2, grid=grid, progress=False)
    assert sorted(r["close"] for r in rows) == [0, 1]
    for k in (0, 1):
        direct = [float(mask_iou(noise_diff_mask(tiny_components, Image.fromarray(e.scene.image), e.source, e.target,
                                                 n=2, mask_noise=0.6, guidance=3.0, clamp_ratio=100.0, threshold=0.4,
                                                 rescale="range", fill_holes=True, close=k, seed=i,
                                                 progress=False).upsampled((64, 64))[0].numpy(), e.mask))
                  for i, e in enumerate(edits)]
        assert next(r for r in rows if r["close"] == k)["mask_iou"] == pytest.approx(np.mean(direct))
    assert "close" in tune.format_masks(rows).splitlines()[0]


def test_mask_ious_take_the_masks_at_the_edits_steps(tiny_components):
    """The mask's noise level is a timestep of the DDIM grid: the grid must score the masks at the
    steps the edits will run (it used the paper's 50 whatever ``--steps`` said)."""
    edits = tune.validation_edits(2)
    grid = dict(mask_noise=(0.5,), clamp_ratio=(100.0,), threshold=(0.4,), rescale=("range",), fill_holes=(False,))

    def direct(steps):
        return np.mean([float(mask_iou(noise_diff_mask(tiny_components, Image.fromarray(e.scene.image), e.source,
                                                       e.target, n=2, mask_noise=0.5, guidance=3.0, clamp_ratio=100.0,
                                                       threshold=0.4, rescale="range", steps=steps, seed=i,
                                                       progress=False).upsampled((64, 64))[0].numpy(), e.mask))
                        for i, e in enumerate(edits)])

    for steps in (3, 5):
        rows = tune.mask_ious(tiny_components, edits, guidance=3.0, n=2, grid=grid, steps=steps, progress=False)
        assert rows[0]["mask_iou"] == pytest.approx(direct(steps))
    assert direct(3) != direct(5)  # the two noise levels give other masks: the test can tell them apart


def test_mask_ious_score_each_rescale_as_noise_diff_mask_makes_it(tiny_components):
    edits = tune.validation_edits(2)
    grid = dict(mask_noise=(0.6,), clamp_ratio=(100.0,), threshold=(0.4,), rescale=("mean", "range"),
                fill_holes=(False,))
    rows = tune.mask_ious(tiny_components, edits, guidance=3.0, n=2, grid=grid, progress=False)
    assert sorted(r["rescale"] for r in rows) == ["mean", "range"]
    for how in ("mean", "range"):
        direct = []
        for i, e in enumerate(edits):
            m = noise_diff_mask(tiny_components, Image.fromarray(e.scene.image), e.source, e.target, n=2, mask_noise=0.6,
                                guidance=3.0, clamp_ratio=100.0, threshold=0.4, rescale=how, seed=i, progress=False)
            direct.append(float(mask_iou(m.upsampled((64, 64))[0].numpy(), e.mask)))
        assert next(r for r in rows if r["rescale"] == how)["mask_iou"] == np.mean(direct)
    table = tune.format_masks(rows).splitlines()
    assert table[0].split()[3] == "D̃" and sorted(line.split()[3] for line in table[1:]) == ["mean", "range"]


def test_the_mean_mask_iou_leaves_out_the_whole_image_kinds(tiny_components):
    edits = [e for e in tune.validation_edits(12, "rich", 64) if e.kind in ("shape", "night")]
    grid = dict(mask_noise=(0.5,), clamp_ratio=(3.0,), threshold=(0.5,), fill_holes=(False,))
    (row,) = tune.mask_ious(tiny_components, edits, guidance=3.0, n=2, grid=grid, progress=False)
    assert "night" in tune.WHOLE_IMAGE_KINDS and row["mask_iou_night"] != row["mask_iou_shape"]
    assert row["mask_iou"] == row["mask_iou_shape"]  # the night edits are reported, not ranked on
    (only_night,) = tune.mask_ious(tiny_components, [e for e in edits if e.kind == "night"], guidance=3.0, n=2,
                                   grid=grid, progress=False)
    assert only_night["mask_iou"] == only_night["mask_iou_night"]


def test_edit_scores_leave_a_whole_image_edits_missing_background_out(tiny_components):
    edits = [e for e in tune.validation_edits(12, "rich", 64) if e.kind in ("colour", "night")][:3]
    mask = dict(mask_noise=0.5, clamp_ratio=3.0, threshold=0.5, fill_holes=False)
    (row,) = tune.edit_scores(tiny_components, edits, 2, [mask], grid=dict(guidance=(2.0,), encoding_ratio=(0.5,)),
                              progress=False)
    assert any(e.kind == "night" for e in edits) and any(e.kind == "colour" for e in edits)
    assert np.isfinite(row["background_psnr"])  # the night edit's PSNR is NaN (its region is the whole image)


def test_no_edits_gives_the_mask_grid_only(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(tune, "MASK_GRID", dict(mask_noise=(0.5,), clamp_ratio=(3.0,), threshold=(0.5,),
                                               fill_holes=(False,)))
    monkeypatch.setattr(tune, "edit_scores", lambda *a, **k: pytest.fail("stage 2 ran with --edits 0"))
    tune.main(["--model", str(tiny_model_dir), "--edits", "0", "--mask-edits", "2", "--steps", "2", "--no-progress"])
    assert "IoU" in capsys.readouterr().out  # the mask grid's table
    for bad in (["--edits", "0", "--write"], ["--edits", "-1"], ["--mask-edits", "0"]):
        with pytest.raises(SystemExit):
            tune.main(["--model", str(tiny_model_dir), *bad])
