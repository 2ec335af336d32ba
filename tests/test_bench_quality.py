"""The quality benchmark: its batched pieces equal the library run one edit at a time, its
aggregation is right on hand-made rows, and the quick mode writes a complete results.json and
its plots (tiny random model: the figures themselves mean nothing)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

from diffedit_lab import (
    EditSettings,
    ddim_invert,
    encode,
    encode_decode,
    encode_prompt,
    masked_denoise,
    noise_diff_mask,
    sdedit,
)
from diffedit_lab.baselines import diffusers_decode, diffusers_pipeline, diffusers_prepare, latent_region, oracle
from diffedit_lab.bench import quality as q
from diffedit_lab.models import fresh_schedulers
from diffedit_lab.sampling import denoising_timesteps
from diffedit_lab.toy.quality import HELD_OUT_SEED, EDIT_SEED_OFFSET, held_out_edits

STEPS = 4


@pytest.fixture(scope="module")
def data(tiny_components):
    c = tiny_components
    edits = held_out_edits(2, q.BENCH_SEED)
    z0 = encode(c, [e.scene.image for e in edits])
    emb = lambda texts: torch.cat([encode_prompt(c, t) for t in texts])  # noqa: E731
    return dict(edits=edits, z0=z0, uncond=emb([""]), source=emb([e.source for e in edits]),
                target=emb([e.target for e in edits]))


def close(a, b, tol=1e-4):
    return float((a - b).abs().max()) <= tol


# --------------------------------------------------------------------------- held-out data


def test_edits_are_held_out_and_balanced():
    s = q.QualityRun()
    first_scene_seed = s.seed + EDIT_SEED_OFFSET
    assert first_scene_seed >= 10_000_000  # training seeds are below
    ours = range(first_scene_seed, first_scene_seed + s.edits)
    theirs = range(HELD_OUT_SEED, HELD_OUT_SEED + EDIT_SEED_OFFSET + 10_000)  # toy/quality.py's scenes and edits
    assert ours.stop <= theirs.start
    kinds = [e.kind for e in held_out_edits(6, s.seed)]
    assert kinds == ["shape", "colour"] * 3


def test_rich_edits_take_every_masked_kind_in_turn_and_any_share_is_the_same():
    from diffedit_lab.toy.quality import MASKED_KINDS, held_out_kinds
    from diffedit_lab.toy.world import KINDS

    assert set(MASKED_KINDS) == set(KINDS) - {"night"} and len(MASKED_KINDS) == 5
    whole = held_out_edits(12, q.BENCH_SEED, world="rich")
    assert [e.kind for e in whole] == list(MASKED_KINDS * 3)[:12]
    assert all(e.scene.world == "rich" for e in whole)
    share = held_out_edits(4, q.BENCH_SEED, world="rich", first=7)  # a process's share: the same edits
    for a, b in zip(share, whole[7:11], strict=True):
        assert (a.kind, a.source, a.target) == (b.kind, b.source, b.target) and np.array_equal(a.mask, b.mask)
    assert [e.kind for e in held_out_edits(3, q.BENCH_SEED, world="rich", kinds=("night", "remove"))] == \
        ["night", "remove", "night"]
    assert [e.kind for e in held_out_edits(4, q.BENCH_SEED, first=1)] == ["colour", "shape", "colour", "shape"]
    with pytest.raises(ValueError, match="rich world"):
        held_out_kinds("classic", ("size",))
    with pytest.raises(ValueError, match="unknown kind.*purple"):
        held_out_kinds("rich", ("colour", "purple"))


def test_bench_cli_refuses_kinds_its_world_has_not(capsys):
    with pytest.raises(SystemExit):
        q.parse_args(["--kinds", "colour", "sepia"])
    assert "unknown kind(s) sepia" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        q.parse_args(["--world", "classic", "--kinds", "remove"])
    assert "classic world has shape and colour edits only" in capsys.readouterr().err
    a = q.parse_args(["--world", "rich", "--kinds", "background", "remove"])
    assert q.settings_from(a).kinds == ("background", "remove") and q.settings_from(a).world == "rich"


def test_ledits_concepts_name_what_each_kind_adds_and_removes():
    from diffedit_lab.toy.successors import ledits_concepts

    for e in held_out_edits(12, q.BENCH_SEED, world="rich", kinds=("colour", "size", "remove", "background",
                                                                    "night", "shape")):
        got = ledits_concepts(e)
        assert len(got["concepts"]) == len(got["reverse"]) >= 1
        added = [w for w, r in zip(got["concepts"], got["reverse"]) if not r]
        removed = [w for w, r in zip(got["concepts"], got["reverse"]) if r]
        for word in added:  # what is added is in the target text and not in the source
            assert word in e.target and word not in e.source, (e.kind, word, e.source, e.target)
        for word in removed:
            assert word in e.source and word not in e.target, (e.kind, word, e.source, e.target)
        if e.kind == "remove":
            assert added == [] and removed == [e.scene.objects[e.index].name]
        if e.kind == "background":
            assert set(got["concepts"]) == {e.scene.background, e.target_scene.background} - {"plain"}


# --------------------------------------------------------------------------- batched = library


def test_mask_draws_equal_noise_diff_mask_for_every_n_and_reference(tiny_components, data):
    c, d = tiny_components, data
    seeds = [7, 8]
    s = EditSettings(mask_noise=0.5, guidance=5.0, steps=STEPS)
    masks = q.edit_masks(c, d["z0"], d["source"], d["target"], d["uncond"], seeds, s, n=3)
    for i, e in enumerate(d["edits"]):
        for n in (1, 3):
            for reference, text in (("caption", e.source), ("empty", "")):
                lib = noise_diff_mask(c, d["z0"][i:i + 1], text, e.target, n=n, mask_noise=0.5, guidance=5.0,
                                      seed=seeds[i], steps=STEPS, progress=False)
                assert close(masks[reference][i].first_draws(n).difference, lib.difference, 1e-5)  # other batch sizes: rounding
                for fill, how in itertools.product((False, True), ("mean", "range")):
                    lib_f = lib.rethreshold(fill_holes=fill, rescale=how)
                    ours, fine = q.masks_from(masks[reference][i:i + 1], n, 3.0, 0.5, fill, (64, 64), how)
                    assert (ours != lib_f.mask).float().mean() <= 0.01  # a pixel may flip at exactly τ
                    assert (fine != lib_f.upsampled((64, 64))).float().mean() <= 0.01
    ranged = q.edit_masks(c, d["z0"][:1], d["source"][:1], d["target"][:1], d["uncond"], seeds[:1],
                          s.replace(rescale="range"), n=1)
    assert all(m.rescale == "range" for m in ranged["caption"] + ranged["empty"])


def test_one_encoding_holds_every_smaller_ratio(tiny_components, data):
    c, d = tiny_components, data
    traj, timesteps = q.encode_all(c, d["z0"], d["source"], d["uncond"], steps=STEPS, strength=0.8,
                                   guidance=5.0, batch=2)
    assert q.prefix_ok(c, STEPS, 0.5, 0.8) and q.prefix_ok(c, 10, 0.3, 0.9)
    for i, e in enumerate(d["edits"]):
        for r in (0.5, 0.8):
            lib = ddim_invert(c, d["z0"][i:i + 1], e.source, strength=r, steps=STEPS, guidance=5.0, progress=False)
            assert close(traj[: lib.num_steps + 1, i:i + 1], lib.trajectory)
            assert torch.equal(timesteps[: lib.num_steps], lib.timesteps)


def test_batched_decoding_equals_masked_denoise_encode_decode_and_sdedit(tiny_components, data):
    c, d = tiny_components, data
    z0, r = d["z0"], 0.5
    traj, _ = q.encode_all(c, z0, d["uncond"].expand(2, -1, -1), d["uncond"], steps=STEPS, strength=0.8,
                           guidance=1.0, batch=2)
    k = 2  # ⌊4 · 0.5⌋
    enc = traj[: k + 1]
    masks = latent_region(c, np.stack([e.mask for e in d["edits"]]))
    ones = torch.ones_like(masks)
    scheduler, _ = fresh_schedulers(c)
    t_r = denoising_timesteps(scheduler, STEPS, r)[:1]

    noise = torch.cat([randn_tensor(z0[:1].shape, generator=torch.Generator().manual_seed(s)) for s in (3, 4)])
    start = torch.cat([enc[-1], enc[-1], scheduler.add_noise(z0, noise, t_r)])
    out = q.decode_all(c, start, torch.cat([d["target"]] * 3), d["uncond"], torch.cat([masks, ones, ones]),
                         torch.cat([enc, enc, torch.zeros_like(enc)], 1), steps=STEPS, strength=r, guidance=5.0,
                         batch=4)  # batches of 4 jobs: the chunks mix methods
    for i, e in enumerate(d["edits"]):
        inv = ddim_invert(c, z0[i:i + 1], "", strength=r, steps=STEPS, progress=False)
        assert close(oracle(c, inv, e.mask, e.target, guidance=5.0, progress=False).latents, out[i:i + 1])
        assert close(masked_denoise(c, inv, masks[i:i + 1], e.target, guidance=5.0, progress=False).latents,
                     out[i:i + 1])
        assert close(encode_decode(c, inv, e.target, guidance=5.0, progress=False).latents, out[2 + i:3 + i])
        lib = sdedit(c, z0[i:i + 1], e.target, strength=r, steps=STEPS, guidance=5.0, seed=3 + i, progress=False)
        assert close(lib.latents, out[4 + i:5 + i])


def test_diffusers_invert_to_the_largest_ratio_holds_the_smaller(tiny_components, data):
    from PIL import Image

    c, d = tiny_components, data
    pipe = diffusers_pipeline(c)
    images = [Image.fromarray(e.scene.image) for e in d["edits"][:1]]
    src, tgt = [d["edits"][0].source], [d["edits"][0].target]
    masks, big = diffusers_prepare(pipe, images, src, tgt, seeds=[5], strength=0.8, steps=STEPS, n=2)
    _, small = diffusers_prepare(pipe, images, src, tgt, seeds=[5], strength=0.5, steps=STEPS, n=2)
    assert big.shape[1] == 3 and small.shape[1] == 2
    assert close(big[:, -2:], small, 1e-5)
    a = diffusers_decode(pipe, masks, big, tgt, strength=0.5, steps=STEPS)
    b = diffusers_decode(pipe, masks, small, tgt, strength=0.5, steps=STEPS)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert q._diffusers_prefix_ok(pipe, 10, 0.3, 0.9)


def test_latent_region_any_overlap(tiny_components):
    region = np.zeros((8, 8), bool)
    region[1, 1] = True  # one pixel of the top-left 2×2 cell (tiny model: f = 2)
    m = latent_region(tiny_components, region)
    assert m.shape == (1, 1, 4, 4) and m.sum() == 1 and m[0, 0, 0, 0] == 1
    assert latent_region(tiny_components, region, cover=0.25).sum() == 0  # covers exactly 1/4, not more
    with pytest.raises(ValueError):
        latent_region(tiny_components, np.zeros((7, 8)))


def test_compare_runs_every_method_on_one_image(tiny_components):
    from diffedit_lab import edit

    e = held_out_edits(1, 123)[0]
    images, masks = q_compare(tiny_components, e)
    classic = [m for m in q.METHODS if m not in q.SUCCESSORS]  # baselines.compare: the bench's first five
    assert list(images) == classic and list(masks) == [m for m in q.MASK_METHODS if m in classic]
    assert all(v.shape == (64, 64, 3) and v.dtype == np.uint8 for v in images.values())
    assert all(m.shape == (32, 32) for m in masks.values())
    ours = edit(tiny_components, e.scene.image, e.source, e.target, n=2, strength=0.5, steps=2, seed=1,
                progress=False)
    assert np.array_equal(np.asarray(ours.image), images["diffedit"])


def q_compare(c, e):
    from diffedit_lab.baselines import compare

    return compare(c, e.scene.image, e.source, e.target, e.mask, n=2, strength=0.5, steps=2, seed=1)


# --------------------------------------------------------------------------- pure pieces


def row(method, r, variant=None, kind="shape", **m):
    base = dict(edit_success=1.0, untouched_kept=1.0, background_psnr=30.0, background_ssim=0.9, mask_iou=0.5)
    return dict(base, **m, method=method, r=r, variant=variant, kind=kind, edit=0)


def test_summarize_by_hand():
    rows = [row("diffedit", 0.8, edit_success=1.0, background_psnr=30.0, mask_iou=float("nan")),
            row("diffedit", 0.8, edit_success=0.0, background_psnr=34.0, mask_iou=0.6),
            row("diffedit", 0.8, edit_success=1.0, background_psnr=32.0, mask_iou=0.4),
            row("diffedit", 0.8, edit_success=1.0, background_psnr=32.0, mask_iou=float("nan"))]
    s = q.summarize(rows)
    assert s["count"] == 4
    assert s["edit_success"] == 0.75 and math.isclose(s["edit_success_se"], math.sqrt(0.75 * 0.25 / 4))
    assert s["background_psnr"] == 32.0
    assert math.isclose(s["background_psnr_se"], math.sqrt(8 / 3) / 2)  # sample std √(8/3), m = 4
    assert math.isclose(s["mask_iou"], 0.5) and math.isclose(s["mask_iou_se"], math.sqrt(0.02) / math.sqrt(2))
    nan = q.summarize([row("sdedit", 0.5, mask_iou=float("nan"))])
    assert math.isnan(nan["mask_iou"]) and math.isnan(nan["mask_iou_se"]) and math.isnan(nan["background_psnr_se"])


def test_report_and_ablations_from_rows():
    settings = dict(ablation_r=0.8, n=10, threshold=0.5, n_values=[1, 10], thresholds=[0.25, 0.5])
    rows = [row("sdedit", 0.5, edit_success=0.0), row("diffedit", 0.8), row("diffedit", 0.5, kind="colour"),
            row("diffedit", 0.8, ["n", 1], edit_success=0.0), row("diffedit", 0.8, ["threshold", 0.25], mask_iou=0.2),
            row("diffedit", 0.8, ["reference", "empty"]), row("diffedit", 0.8, ["encoding", "caption, w=7.5"])]
    rep = q.report(rows, settings, {}, {}, {})
    assert list(rep["methods"]) == ["diffedit", "sdedit"]  # METHODS order
    assert list(rep["methods"]["diffedit"]) == ["0.5", "0.8"]
    assert rep["methods"]["diffedit"]["0.8"]["count"] == 1  # ablation variants stay out of the sweep
    assert rep["by_kind"]["colour"]["diffedit"]["0.5"]["count"] == 1
    ab = rep["ablations"]
    assert ab["r"] == 0.8 and list(ab["n"]) == ["1", "10"] and ab["n"]["1"]["edit_success"] == 0.0
    same = {json.dumps(ab[name][value], sort_keys=True) for name, value in
            (("n", "10"), ("threshold", "0.5"), ("reference", "caption"), ("encoding", "empty, w=1"))}
    assert len(same) == 1  # the default setting is one output, shared by every ablation
    assert ab["threshold"]["0.25"]["mask_iou"] == 0.2
    assert list(ab["encoding"]) == ["empty, w=1", "caption, w=7.5"]  # a missing variant is left out


def test_tradeoff_points_sorted_and_without_nan():
    results = {"methods": {
        "diffedit": {"0.8": dict(background_psnr=30.0, edit_success=0.9), "0.3": dict(background_psnr=35.0,
                                                                                       edit_success=0.2)},
        "sdedit": {"0.5": dict(background_psnr=float("nan"), edit_success=0.5)},
    }}
    pts = q.tradeoff_points(results)
    assert pts == {"diffedit": [(0.3, 35.0, 0.2), (0.8, 30.0, 0.9)], "sdedit": []}


CLASSIC = ["--world", "classic"]  # these stand-in models have no tokenizer to tell their world by


def test_settings_and_planned_rows():
    from types import SimpleNamespace

    paper = SimpleNamespace(defaults={})  # a model that records no settings: the library's defaults
    a = q.parse_args(["--quick", "--edits", "2", "--world", "classic"])
    s = q.resolve(paper, q.settings_from(a))
    assert s.edits == 2 and s.steps == q.QUICK["steps"] and s.ratios == (0.5, 0.8) and s.n == 5
    assert (s.threshold, s.mask_noise, s.clamp_ratio, s.guidance) == (0.5, 0.5, 3.0, 7.5)
    assert s.edit == EditSettings(n=5, steps=q.QUICK["steps"])  # the paper's, the run's steps and n
    full = q.resolve(paper, q.settings_from(q.parse_args(CLASSIC)))
    assert full.edits >= 100 and set(q.RATIOS) <= set(full.ratios) and full.n_values == (1, 2, 5, 10, 20)
    assert q.n_draws(full) == 20
    assert q.settings_from(q.parse_args(["--ratios", "0.4", "0.6", *CLASSIC])).ablation_r == 0.6
    # per edit, quick: masks 3·5 + 4·5; encodings 3 + 3·3; 4 methods 2·(2+3)·4; diffusers 2·3 + 2·5;
    # 6 ablation variants (n = 1, τ = 0.25 and 0.75, R = ∅, two encodings) 2·3 each
    assert q.plan_rows(s, 5.0) == 2 * (35 + 12 + 40 + 16 + 36)
    # a model's recorded settings are used, and its threshold joins the ablation's
    tuned = q.resolve(SimpleNamespace(defaults=dict(threshold=0.8, mask_strength=0.7, n=8, guidance=3)),
                      q.settings_from(q.parse_args(CLASSIC)))
    assert (tuned.threshold, tuned.mask_noise, tuned.n, tuned.guidance) == (0.8, 0.7, 8, 3.0)
    assert tuned.thresholds == (0.25, 0.5, 0.75, 0.8) and ("threshold", 0.8) not in q.ablation_variants(tuned)
    given = dataclasses.replace(q.settings_from(q.parse_args(CLASSIC)), overrides=dict(threshold=0.6))
    assert q.resolve(tuned_model := SimpleNamespace(defaults=dict(threshold=0.8)), given).threshold == 0.6  # given beats recorded
    assert q.resolve(tuned_model, q.settings_from(q.parse_args(CLASSIC))).threshold == 0.8
    # the recorded rescale is the run's, and results.json's settings record it
    assert s.rescale == "mean" and s.record()["rescale"] == "mean"
    ranged = q.resolve(SimpleNamespace(defaults=dict(rescale="range")), q.settings_from(q.parse_args(CLASSIC)))
    assert ranged.rescale == "range" and ranged.record()["rescale"] == "range"


# --------------------------------------------------------------------------- the quick run


def test_quick_run_writes_results_and_plots(tiny_model_dir, tmp_path, capsys):
    from diffedit_lab.bench.__main__ import main

    out = tmp_path / "bench"
    argv = ["quality", "--quick", "--edits", "2", "--steps", "3", "--model", str(tiny_model_dir), "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "edit success" in printed and "ablations at r = 0.8" in printed
    res = json.loads((out / "results.json").read_text())
    assert set(res["methods"]) == set(q.METHODS)
    for method, by_r in res["methods"].items():
        assert list(by_r) == (["0.8"] if method in q.SUCCESSORS else ["0.5", "0.8"])  # successors: at ablation_r
        for v in by_r.values():
            assert v["count"] == 2
            for k in q.METRICS:
                assert k in v and f"{k}_se" in v
            assert (v["mask_iou"] == v["mask_iou"]) == (method in q.MASK_METHODS)  # NaN without a mask
    assert set(res["by_kind"]) == {"shape", "colour"}
    ab = res["ablations"]
    assert list(ab["n"]) == ["1", "5"] and list(ab["threshold"]) == ["0.25", "0.5", "0.75"]
    assert list(ab["reference"]) == ["caption", "empty"] and list(ab["encoding"]) == list(q.ENCODINGS)
    assert set(res["ceilings"]) == {"input_unchanged", "true_target", "vae_psnr"}
    assert res["ceilings"]["true_target"]["edit_success"] == 1.0  # the checker reads the truth right
    assert res["ceilings"]["input_unchanged"]["edit_success"] == 0.0
    assert all(res["checks"]["shared_encoding"].values()) and all(res["checks"]["diffusers_shared_invert"].values())
    s = res["settings"]
    names = [f.name for f in dataclasses.fields(q.QualityRun) if f.name not in ("edit", "overrides")]
    written = q.QualityRun(**{k: tuple(s[k]) if isinstance(s[k], list) else s[k] for k in names},
                           edit=EditSettings(**{k: s[k] for k in EditSettings.names()}))
    assert s["steps"] == 3 and s["edits"] == 2 and s["unet_rows"] == q.plan_rows(written, s["guidance"])
    assert None not in (s["threshold"], s["mask_noise"], s["clamp_ratio"], s["n"])  # the model's, resolved
    for name in res["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "rows.jsonl").read_text().splitlines()) == 2 * (5 * 2 + 6 + len(q.SUCCESSORS))
    table = (out / "table.md").read_text().splitlines()
    assert table[0].startswith("| method | r | edit success") and len([x for x in table if x.startswith("| ")]) == 12 + 4 + 4
    kinds = table[table.index(next(x for x in table if x.startswith("Per kind"))) + 2:]
    assert [x.split(" | ")[0] for x in kinds[2:]] == ["| colour (1)", "| shape (1)"]  # 2 edits: one of each
    assert kinds[0] == "| kind | " + " | ".join(res["methods"]) + " |"


# --------------------------------------------------------------------------- the committed results agree


def test_committed_results_table_and_readme_agree():
    """docs/results/quality: table.md is what results.json gives, and the README shows that table."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    folder = root / "docs" / "results" / "quality"
    results = q.load_results(folder / "results.json")
    table = q.markdown_table(results)
    assert (folder / "table.md").read_text().strip() == table.strip()
    readme = (root / "README.md").read_text()
    assert table.strip() in readme, "README's evaluation table differs from docs/results/quality/table.md"
    assert f"**{results['settings']['steps']} DDIM steps**" in readme
    for name in ("tradeoff.png", "ablations.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the results are of the shipped model (its training step is recorded in the run's settings)
    trained = json.loads((root / "diffedit_lab" / "toy" / "model" / "training.json").read_text())["unet_steps"]
    assert results["settings"]["model_training"]["unet_steps"] == trained
    # … and at its recorded settings
    recorded = json.loads((root / "diffedit_lab" / "toy" / "model" / "diffedit_lab.json").read_text())
    assert results["settings"]["model_defaults"] == recorded


def test_successor_rows_are_toy_successors_figures(tiny_components):
    """The bench's rows of DiffEdit's successors are what ``toy.successors.score_edit`` measures
    on the same edit, seed and settings (mask IoU, precision, recall, success, untouched, PSNR)."""
    from diffedit_lab.toy import successors

    c = tiny_components
    s = q.resolve(c, dataclasses.replace(q.QualityRun(**q.QUICK), steps=2, edits=1))
    e = held_out_edits(1, q.BENCH_SEED)[0]
    seed = q.BENCH_SEED
    ours = {r["method"]: r for r in q.successor_rows(c, e, 0, seed, s)}
    assert list(ours) == list(q.SUCCESSORS) and all(r["r"] == s.ablation_r and r["kind"] == e.kind
                                                   for r in ours.values())
    theirs = {r["method"]: r for r in successors.score_edit(c, e, seed=seed, settings=s.edit,
                                                            encoding_ratio=s.ablation_r)}
    for name, row in ours.items():
        for k_ours, k_theirs in (("mask_iou", "mask_iou"), ("mask_precision", "precision"), ("mask_recall", "recall"),
                                 ("edit_success", "edit_success"), ("untouched_kept", "untouched_kept"),
                                 ("background_psnr", "background_psnr")):
            a, b = row[k_ours], theirs[name][k_theirs]
            assert (a != a and b != b) or a == pytest.approx(b, abs=1e-9), (name, k_ours, a, b)
    assert ours["cross_attention"]["mask_iou"] != ours["intersection"]["mask_iou"] or \
        ours["cross_attention"]["mask_precision"] != ours["intersection"]["mask_precision"]


def test_quick_run_of_the_rich_world_reports_every_kind(tiny_model_dir, tmp_path):
    """Rich edits through every method: results per kind, and the ceilings say the rich checker
    reads the truth right (the true target succeeds, the input does not) for each kind. (No
    successors: the tiny model's text encoder reads 16 tokens, before a long caption's change;
    tests/test_methods.py runs them on a removal, test_ledits_concepts… names each kind's concepts.)"""
    from diffedit_lab.bench.__main__ import main

    out = tmp_path / "bench"
    kinds = ["size", "background", "remove"]
    argv = ["quality", "--quick", "--edits", "3", "--steps", "2", "--model", str(tiny_model_dir), "--out", str(out),
            "--no-progress", "--world", "rich", "--kinds", *kinds, "--no-successors"]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["by_kind"]) == set(kinds) and res["settings"]["world"] == "rich"
    assert res["settings"]["kinds"] == kinds
    assert set(res["by_kind"]["remove"]) == set(q.METHODS) - set(q.SUCCESSORS)
    assert res["ceilings"]["true_target"]["edit_success"] == 1.0
    assert res["ceilings"]["input_unchanged"]["edit_success"] == 0.0
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rows} == set(kinds)


def test_committed_results_are_packaged_and_the_same():
    """Notebook 07 opened outside the repository reads the package's copy: it must be the committed run."""
    from importlib import resources

    from diffedit_lab.bench import quality_report

    packaged = resources.files("diffedit_lab.bench").joinpath(quality_report.PACKAGED_RESULTS)
    assert packaged.is_file(), "diffedit_lab/bench/results/quality.json is missing"
    assert json.loads(packaged.read_text()) == json.loads(quality_report.REPOSITORY_RESULTS.read_text()), (
        "the packaged results differ from docs/results/quality/results.json: copy it over")
    results, where = q.committed_results()
    assert results == json.loads(packaged.read_text()) and "docs/results/quality" in where


def test_diffusers_gets_our_clamp_only_where_it_rescales_as_we_do():
    """diffusers' generate_mask has only the mean rescale (D/(κ·mean D), cut at 0.5): it gets our κ
    there; with the min–max rescale our κ (100: no clamp) would empty its mask, so it keeps its own 3."""
    from types import SimpleNamespace

    from diffedit_lab.bench.quality_run import diffusers_clamp_ratio

    assert diffusers_clamp_ratio(SimpleNamespace(rescale="mean", clamp_ratio=5.0)) == 5.0
    assert diffusers_clamp_ratio(SimpleNamespace(rescale="range", clamp_ratio=100.0)) == 3.0
