"""The quality script without a model: held-out data, bars and the printed table."""

from __future__ import annotations

import math

from diffedit_lab.toy import quality as q


def test_held_out_data_never_uses_training_seeds():
    assert q.HELD_OUT_SEED >= 10_000_000
    edits = q.held_out_edits(6)
    assert [e.kind for e in edits] == ["shape", "colour"] * 3
    assert [s.caption for s in q.held_out_scenes(3)] == [s.caption for s in q.held_out_scenes(3)]


def test_bars():
    bar = q.Bar(0.6, ">=")
    assert bar.passed(0.6) and not bar.passed(0.59) and bar.passed(float("nan")) is False
    assert q.Bar(1.0, "<=").passed(0.5) and not q.Bar(1.0, "<=").passed(1.5)
    assert q.Bar().passed(0.1) is None
    metrics = dict(t2i_objects_ok=0.75, t2i_all_ok=0.5, mask_iou=0.5, background_psnr=31.0, seconds_per_edit=2.0)
    assert q.failed_bars(metrics) == ["mask_iou"]
    bars = {f.key: f.bar for f in q.FIGURES if f.bar.op}
    assert {k: b.threshold for k, b in bars.items()} == dict(
        t2i_objects_ok=0.70, mask_iou=0.60, background_psnr=30.0, edit_success=0.80, untouched_kept=0.90
    )


def test_format_value():
    assert q.format_value(0.734, "%") == "73.4 %"
    assert q.format_value(31.456, "dB") == "31.46 dB"
    assert q.format_value(1.5, "s") == "1.50 s"
    assert q.format_value(0.61234, "") == "0.612"
    assert q.format_value(float("nan"), "%") == "—" and q.format_value(None, "") == "—"


def test_format_table():
    metrics = dict(t2i_objects_ok=0.75, mask_iou=0.5, seconds_per_edit=2.0)
    lines = q.format_table(metrics).splitlines()
    assert len(lines) == 2 + 3  # header, rule, one line per figure present
    assert lines[0].split() == ["figure", "value", "bar", "ok"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    t2i, iou, secs = lines[2:]
    assert "75.0 %" in t2i and ">= 70.0 %" in t2i and t2i.endswith("PASS")
    assert "0.500" in iou and ">= 0.600" in iou and iou.endswith("FAIL")
    assert secs.endswith("2.00 s")  # no bar, no verdict
    assert len({len(line) for line in lines[:4]}) == 1  # columns aligned


def test_mean_of_ignores_nan():
    rows = [dict(x=1.0), dict(x=float("nan")), dict(x=3.0)]
    assert q.mean_of(rows, "x") == 2.0
    assert math.isnan(q.mean_of([dict(x=float("nan"))], "x")) and math.isnan(q.mean_of([], "x"))


def test_parse_args():
    a = q.parse_args(["--quick", "--json", "out.json"])
    assert (a.scenes, a.edits, a.steps) == (8, 8, 20) and str(a.json) == "out.json" and not a.strict
    a = q.parse_args([])
    assert a.seed == q.HELD_OUT_SEED and a.steps is None and a.model is None and a.world is None
    # what is left out comes from the world and from the model's recorded steps
    classic = q.resolve(a, "classic", 50)
    assert (classic.scenes, classic.edits, classic.steps) == (200, 100, 50)
    rich = q.resolve(a, "rich", 30)
    assert (rich.scenes, rich.edits, rich.classic_edits, rich.steps) == (210, 120, 40, 30)
    quick = q.resolve(q.parse_args(["--quick", "--steps", "3"]), "rich", 50)  # given values stay
    assert (quick.scenes, quick.edits, quick.classic_edits, quick.steps) == (6, 6, 2, 3)
    assert q.resolve(q.parse_args(["--edits", "12"]), "rich", 50).edits == 12


def test_iou_ceiling():
    edits = q.held_out_edits(4)
    assert q.iou_ceiling(edits, 1) == 1.0  # at full resolution the true mask itself
    assert 0.5 < q.iou_ceiling(edits, 4) < 1.0  # 4×4-pixel cells cannot follow the edges


def test_text_to_image_rates_read_the_checker():
    from diffedit_lab.toy.world import make_scene

    scenes = [make_scene(q.HELD_OUT_SEED + i) for i in range(4)]
    images = [s.image for s in scenes]
    captions = [s.caption for s in scenes]
    assert q.text_to_image_rates(images, captions) == dict(
        t2i_objects_ok=1.0, t2i_all_ok=1.0, t2i_colours_ok=1.0, t2i_shapes_ok=1.0)
    swapped = [" and ".join(reversed(c.split(" and "))) for c in captions]  # right objects, wrong order
    differ = [a != b for a, b in zip(swapped, captions)]
    rates = q.text_to_image_rates(images, swapped)
    assert rates["t2i_objects_ok"] == 1 - sum(differ) / 4 and rates["t2i_colours_ok"] == 1.0
    from diffedit_lab.toy.world import BACKGROUND, COLOURS

    extra = []
    for s in scenes:  # a third object: a 6×6 square where the scene is empty
        img = s.image.copy()
        empty = next((y, x) for y in range(4, 54, 2) for x in range(4, 54, 2)
                     if (img[y - 2:y + 8, x - 2:x + 8] == BACKGROUND).all())
        img[empty[0]:empty[0] + 6, empty[1]:empty[1] + 6] = COLOURS["blue"]
        extra.append(img)
    rates = q.text_to_image_rates(extra, captions)
    assert rates["t2i_objects_ok"] == 1.0 and rates["t2i_all_ok"] == 0.0
