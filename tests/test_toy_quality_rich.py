"""The quality command's rich world (issue 13): held-out data, the per-kind bars, the figures
of scored edits, and one quick run on the tiny random model (its numbers are meaningless; what
is checked is that every kind and bar is reported and applied)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from diffedit_lab.toy import quality as q
from diffedit_lab.toy.world import KINDS, VOCABULARY, WORDS, caption


def test_rich_held_out_data_is_balanced_and_reproducible():
    scenes = q.rich_held_out_scenes(9)
    assert [len(s.objects) for s in scenes] == [1, 2, 3] * 3
    assert all(s.world == "rich" for s in scenes)
    assert [s.caption for s in scenes] == [s.caption for s in q.rich_held_out_scenes(9)]
    edits = q.rich_held_out_edits(12)
    assert [e.kind for e in edits] == list(KINDS) * 2  # equal numbers per kind
    assert [e.target for e in edits] == [e.target for e in q.rich_held_out_edits(12)]
    small = q.rich_held_out_scenes(3, size=32)
    assert small[0].image.shape == (32, 32, 3)


def test_the_checker_reads_the_truth_as_right_and_the_source_as_no_edit():
    scenes = q.rich_held_out_scenes(6)
    images, captions = np.stack([s.image for s in scenes]), [s.caption for s in scenes]
    assert q.rich_text_to_image_rates(images, captions) == dict(
        t2i_ok_1=1.0, t2i_ok_2=1.0, t2i_ok_3=1.0, t2i_ok=1.0, t2i_objects_ok=1.0, t2i_background_ok=1.0, t2i_all_ok=1.0)
    wrong = [caption(s.objects, "sand" if s.background == "bricks" else "bricks", s.night) for s in scenes]
    rates = q.rich_text_to_image_rates(images, wrong)
    assert rates["t2i_background_ok"] == 0.0 and rates["t2i_ok"] == 0.0 and rates["t2i_objects_ok"] == 1.0
    assert math.isnan(q.rich_text_to_image_rates(images[:2], captions[:2])["t2i_ok_3"])  # no 3-object caption
    for e in q.rich_held_out_edits(6):
        done, untouched = q.score_edit(e, e.target_scene.image, e.mask), q.score_edit(e, e.scene.image, e.mask)
        assert done["edit_success"] == 1.0 and done["untouched_kept"] == 1.0 and done["mask_iou"] == 1.0, e.kind
        assert untouched["edit_success"] == 0.0, e.kind


def test_per_kind_bars_are_the_issues():
    bars = {f.key: (f.bar.op, f.bar.threshold) for f in q.RICH_FIGURES}
    for kind, success, iou in [("colour", 0.80, 0.60), ("shape", 0.80, 0.60), ("background", 0.80, 0.80),
                               ("size", 0.70, 0.60), ("remove", 0.70, 0.60)]:
        assert bars[f"success_{kind}"] == (">=", success) and bars[f"mask_iou_{kind}"] == (">=", iou)
    assert bars["success_night"] == (None, None) and bars["mask_iou_night"] == (None, None)  # reported only
    assert (bars["t2i_ok_1"], bars["t2i_ok_2"], bars["t2i_ok_3"]) == ((">=", 0.75), (">=", 0.75), (">=", 0.50))
    assert bars["untouched_kept"] == (">=", 0.95) and bars["background_psnr_gap"] == ("<=", 1.5)
    assert (bars["classic_mask_iou"], bars["classic_edit_success"], bars["classic_background_psnr"]) == (
        (">=", 0.60), (">=", 0.85), (">=", 32.0))


def test_failed_bars_of_fabricated_metrics():
    metrics = dict(
        t2i_ok_1=0.80, t2i_ok_2=0.55, t2i_ok_3=0.55,  # 2 objects misses 75 %, 3 objects meets 50 %
        success_colour=0.72, success_size=0.72,  # 72 %: misses colour's 80 %, meets size's 70 %
        success_night=0.0, mask_iou_night=0.0,  # night has no bar
        mask_iou_shape=0.70, mask_iou_background=0.70,  # 0.70: meets 0.60, misses 0.80
        untouched_kept=0.96, background_psnr_gap=1.6,  # 1.6 dB below the ceiling: missed
        classic_mask_iou=0.61, classic_edit_success=0.85, classic_background_psnr=31.9,
        seconds_per_edit=99.0,
    )
    assert set(q.failed_bars(metrics, q.RICH_FIGURES)) == {
        "t2i_ok_2", "success_colour", "mask_iou_background", "background_psnr_gap", "classic_background_psnr"}
    assert "background_psnr_gap" not in q.failed_bars(dict(background_psnr_gap=-0.3), q.RICH_FIGURES)
    assert q.failed_bars(dict(success_remove=float("nan")), q.RICH_FIGURES) == ["success_remove"]  # missing: missed


def test_rich_edit_metrics_pool_as_documented():
    def row(kind, success, kept, iou, psnr, objects=2):
        return dict(kind=kind, edit_success=success, untouched_kept=kept, mask_iou=iou, background_psnr=psnr,
                    objects=objects, seconds_per_edit=1.0)

    rows = [row("colour", 1.0, 1.0, 0.8, 30.0, 1), row("colour", 0.0, 1.0, 0.6, 32.0, 3),
            row("background", 1.0, 0.0, 0.9, 25.0), row("night", 0.0, 0.0, 1.0, float("nan"))]
    vae = np.array([33.0, 33.0, 40.0, float("nan")])
    m = q.rich_edit_metrics(rows, vae)
    assert m["success_colour"] == 0.5 and m["mask_iou_colour"] == pytest.approx(0.7) and m["kept_colour"] == 1.0
    assert m["success_background"] == 1.0 and math.isnan(m["success_shape"])
    assert m["untouched_kept"] == pytest.approx(2 / 3)  # night's 0 left out (with it: 1/2)
    assert (m["edit_success_n1"], m["edit_success_n2"], m["edit_success_n3"]) == (1.0, 0.5, 0.0)
    # the PSNR pair is over the object edits only: the background edit (25 / 40 dB) does not count
    assert (m["background_psnr"], m["vae_psnr"], m["background_psnr_gap"]) == (31.0, 33.0, 2.0)


def test_model_world_from_the_tokenizer(tiny_components):
    class Tok:
        def __init__(self, words):
            self.words = words

        def get_vocab(self):
            return {**{f"{w}</w>": i for i, w in enumerate(self.words)}, "b</w>": 99, "<|endoftext|>": 100}

    class C:
        def __init__(self, words):
            self.tokenizer = Tok(words)

    assert q.model_world(C(VOCABULARY))[0] == "rich"
    assert q.model_world(C(WORDS)) == ("classic", f"the model's words are the classic world's {len(WORDS)}")
    world, why = q.model_world(tiny_components)  # the tiny model knows "star" but not "diamond"
    assert world == "classic" and "'diamond'" in why
    assert q.model_world(C([*VOCABULARY, "cat"]))[0] == "classic"  # a bigger vocabulary is no toy model's


def test_rich_quick_run_reports_every_kind_with_its_bar(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "rich.json"
    code = q.main(["--model", str(tiny_model_dir), "--world", "rich", "--quick", "--steps", "2", "--scenes", "3",
                   "--json", str(out), "--strict", "--no-progress", "--true-mask"])
    report = json.loads(out.read_text())
    assert code == (1 if report["failed"] else 0) and report["failed"]  # a random model misses bars
    st = report["settings"]
    assert (st["world"], st["scenes"], st["edits"], st["classic_edits"], st["steps"]) == ("rich", 3, 6, 2, 2)
    assert st["size"] == 32 and st["true_mask"]  # the tiny model's own size
    assert sorted(r["kind"] for r in report["edits"]) == sorted(KINDS)
    assert {r["kind"] for r in report["classic_edits"]} == {"shape", "colour"}
    assert set(report["metrics"]) == {f.key for f in q.RICH_FIGURES}
    assert set(report["bars"]) == {f.key for f in q.RICH_FIGURES if f.bar.op}
    assert set(report["failed"]) == set(q.failed_bars(report["metrics"], q.RICH_FIGURES))
    text = capsys.readouterr().out
    assert "world: rich (--world)" in text
    for kind in KINDS:
        line = next(line for line in text.splitlines() if line.startswith(f"{kind} edits: success"))
        bar = q.SUCCESS_BARS[kind]
        if bar is None:
            assert line.split()[-1] == "%"  # value only: no bar, no verdict
        else:
            assert f">= {100 * bar:.1f} %" in line and line.split()[-1] in ("PASS", "FAIL")
    assert "classic scenes (2 objects, plain, colour/shape): mask IoU" in text


def test_the_world_defaults_to_the_models(tiny_model_dir, capsys):
    assert q.main(["--model", str(tiny_model_dir), "--scenes", "0", "--edits", "0", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "world: classic (the model does not know" in text


def test_bad_counts_are_refused_before_any_work():
    with pytest.raises(SystemExit):
        q.parse_args(["--edits", "-1"])
    with pytest.raises(SystemExit):
        q.parse_args(["--steps", "0"])


def test_ceilings_score_the_given_images_per_kind():
    edits = q.rich_held_out_edits(6)
    perfect = q.ceiling_edit_metrics(edits, np.stack([e.target_scene.image for e in edits]))
    assert perfect == {f"ceiling_{m}_{k}": 1.0 for k in KINDS for m in ("success", "kept")}
    nothing = q.ceiling_edit_metrics(edits, np.stack([e.scene.image for e in edits]))
    assert all(nothing[f"ceiling_success_{k}"] == 0.0 for k in KINDS)


def test_true_mask_edits_decode_with_each_edits_true_region(tiny_components, monkeypatch):
    import diffedit_lab.edit  # noqa: F401 — imported before the spy goes in, so that edit.py's own
    from diffedit_lab import denoise  # `from .denoise import masked_denoise` binds the real one

    edits = q.rich_held_out_edits(6, size=32)
    seen = []
    real = denoise.masked_denoise

    def spy(c, inversion, mask, prompt, **kw):
        seen.append((np.asarray(mask) > 0, prompt, tuple(inversion.latents.shape[-2:])))
        return real(c, inversion, mask, prompt, **kw)

    monkeypatch.setattr(denoise, "masked_denoise", spy)
    rows = q.run_true_mask_edits(tiny_components, edits, steps=2, progress=False)
    assert [r["kind"] for r in rows] == [e.kind for e in edits]
    for (mask, prompt, (h, w)), e in zip(seen, edits):
        assert mask.shape == (h, w) and prompt == e.target
        cell = e.mask.shape[0] // h
        blocks = e.mask.reshape(h, cell, w, cell)
        assert (mask == blocks.any(axis=(1, 3))).all()  # every latent cell the true region touches
    assert all(0.0 <= r["edit_success"] <= 1.0 for r in rows)
