"""``python -m diffedit_lab.bench speed``: the plumbing, on the tiny model, in CI size.

No timing is asserted here (a shared machine's timings are noise): the speed goals are what the
benchmark itself reports. What must hold anywhere is checked: every scenario is in the JSON,
re-thresholding makes no model call, and scenario (a) is identical to diffusers. The command
runs in this process (through ``python -m diffedit_lab.bench``'s ``main``), which spares the
interpreter start and the imports.
"""

from __future__ import annotations

import json

import torch

from diffedit_lab.bench.__main__ import main as bench_main


def test_quick_speed_bench_reports_every_scenario(tmp_path, capsys):
    out = tmp_path / "speed.json"
    argv = ["speed", "--quick", "--tiny-only", "--rounds", "1", "--warmup", "0", "--steps", "5", "--n", "2",
            "--no-memory", "--json", str(out)]
    threads = torch.get_num_threads()
    assert bench_main(argv) == 0
    assert torch.get_num_threads() == threads  # restored
    printed = capsys.readouterr()
    report = json.loads(out.read_text())
    assert report["environment"]["threads"] == 1 and list(report["models"]) == ["tiny"]
    scenarios = report["models"]["tiny"]["scenarios"]
    assert set(scenarios) == {"a", "a_eager", "b", "c", "d", "e", "f", "g", "edit_s"}
    assert report["models"]["tiny"]["fast_unet"]  # the tiny model takes the lean UNet forward
    for key in ("a", "a_eager", "b", "c", "d", "f", "g"):
        assert scenarios[key]["diffusers"] > 0 and scenarios[key]["ours"] > 0 and scenarios[key]["ratio"] > 0
    for key in ("a", "b", "c", "f", "g"):  # a verdict per goal, from the ratio (whatever this machine's timings)
        assert scenarios[key]["goal"] == report["goals"][key]
        assert scenarios[key]["holds"] == (scenarios[key]["ratio"] <= report["goals"][key])
    assert (report["goals"]["f"], report["goals"]["g"], report["goals"]["edit_s"]) == (0.15, 0.6, 3.5)
    # (f): every timed call was a new target's work — its text, its mask, its decoding — never a cache hit
    f = scenarios["f"]
    assert f["computes_only_the_new_target"] and len(f["computed"]) == 2  # the round's call and the profiled one
    assert all(u == {"embeddings": 1, "draws": 0, "sources": 0, "masks": 1, "inversions": 0, "decodings": 1,
                     "inversions_computed": 0} for u in f["computed"])
    profile = f["profile"]  # the mask's target branch (n rows, one call), then 4 guided decoding steps (2 rows)
    assert (profile["unet_calls"], profile["unet_rows"], profile["decoding_steps"]) == (5, 2 + 4 * 2, 4)
    assert profile["unet_s"] > 0 and profile["vae_decoder_s"] > 0 and profile["text_encoder_s"] > 0
    # (g): one fresh interpreter per side, phases reported by the child, one thread
    g = scenarios["g"]
    assert g["threads"] == 1 and g["ours_wall"] > 0 and g["diffusers_wall"] > 0
    for side in ("ours", "diffusers"):
        assert 0 < g["phases_s"][side]["load"] and 0 < g["phases_s"][side]["edit"] and "exit" in g["phases_s"][side]
    assert len(report["models"]["tiny"]["times_s"]["ours_f"]) == 1
    # the full edit's seconds are only judged at the model's recorded settings (--steps/--n override them here)
    assert scenarios["edit_s"]["ours"] == scenarios["b"]["ours"]
    assert not scenarios["edit_s"]["recorded_settings"] and not scenarios["edit_s"]["holds"]
    assert scenarios["d"]["model_calls"] == 0 and scenarios["d"]["ours_64"] > 0
    # the timed scene is drawn on the model's own latent grid (the UNet's sample_size × the VAE's factor),
    # so a 32×32-latent model is timed on 64-px images, the tiny one on 32-px ones
    assert scenarios["d"]["grid"] == [16, 16] and report["models"]["tiny"]["image_size"] == [32, 32]
    assert "(d) re-threshold a mask (16×16)" in printed.out
    assert scenarios["a"]["identical"]["holds"], scenarios["a"]["identical"]
    runs = scenarios["e"]["runs"]
    assert runs["ours_a"]["unet_calls"] > 0 and runs["ours_b"]["unet_calls"] > 0  # timed through fast_unet
    assert runs["ours_a"]["unet_rows"] < runs["diffusers_a"]["unet_rows"]  # 3n mask rows instead of 4n
    assert runs["ours_b"]["unet_rows"] < runs["ours_a"]["unet_rows"]  # unguided inversion
    assert all(0 <= r["overhead"] < 1 for r in runs.values())
    for line in ("(a) one edit, identical settings", "(c) five targets, one image", "(a) identical: 0 of",
                 "(f) new target, warm session", "(g) cold start, fresh process", "… a full edit, in seconds",
                 "each call computed only the new text, its mask and its decoding"):
        assert line in printed.out
    assert "round 1/1" in printed.err  # progress


def test_identical_settings_use_diffusers_threshold_whatever_the_model_records(tiny_model_dir):
    """generate_mask always cuts at 0.5: scenario (a) must too, even for a model whose recorded τ differs."""
    import numpy as np
    from PIL import Image

    from diffedit_lab import EditSettings, load_components
    from diffedit_lab.bench import speed

    c = load_components(tiny_model_dir, device="cpu", dtype=torch.float32)
    s = EditSettings(n=2, mask_noise=0.5, clamp_ratio=1.5, threshold=0.95, encoding_ratio=0.5, steps=4, guidance=7.5)
    image = Image.fromarray(speed.scene(32))
    with speed._quiet():
        theirs = speed.diffusers_mask(speed.diffusers_pipeline(tiny_model_dir), image, speed.SOURCE, speed.TARGETS[0], s)
        mask, _, _ = speed.ours_identical(c, image, speed.SOURCE, speed.TARGETS[0], s)
    assert 0 < float(mask.mask.mean()) < 1  # τ 0.95 would cut elsewhere than 0.5 on this map
    assert np.array_equal(mask.mask[0].numpy(), np.asarray(theirs[0], dtype=np.float32))


def test_bench_lists_its_commands_and_explains_unknown_ones(capsys):
    assert bench_main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert "speed" in listed and "quality" in listed
    assert bench_main(["nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


def test_memory_is_measured_around_one_edit(tiny_model_dir):
    from diffedit_lab import EditSettings
    from diffedit_lab.bench import speed

    settings = EditSettings(n=2, mask_noise=0.5, clamp_ratio=3.0, threshold=0.5, encoding_ratio=0.8, steps=4).as_dict()
    child = speed.memory_child(dict(side="ours_b", folder=str(tiny_model_dir), settings=settings,
                                    threads=torch.get_num_threads()))
    assert child["side"] == "ours_b" and child["peak_kb"] >= child["before_kb"] and child["delta_mb"] >= 0
    assert child["method"]


def test_new_targets_are_new_and_cache_use_counts_what_a_call_computed(tiny_model_dir):
    """(f)'s two helpers: the targets it times are texts nothing has seen, and cache_use tells a
    cache hit from a computation (here: the same target again computes nothing)."""
    from PIL import Image

    from diffedit_lab import EditSession, EditSettings, load_components
    from diffedit_lab.bench import speed

    seen = (speed.SOURCE, *speed.TARGETS)
    fresh = list(speed.fresh_targets(seen))
    assert len(fresh) == len(set(fresh)) == 144 - len(set(seen)) and not set(fresh) & set(seen)
    c = load_components(tiny_model_dir, device="cpu", dtype=torch.float32)
    s = EditSettings(n=2, mask_noise=0.5, clamp_ratio=3.0, threshold=0.5, encoding_ratio=0.5, steps=4, guidance=2.0)
    session = EditSession(c, Image.fromarray(speed.scene(32)))
    _, first = speed.ours_new_target(session, speed.SOURCE, fresh[0], s)
    assert first == dict(embeddings=3, draws=1, sources=1, masks=1, inversions=1, decodings=1, inversions_computed=1)
    _, new = speed.ours_new_target(session, speed.SOURCE, fresh[1], s)
    assert new == speed.NEW_TARGET_COMPUTES
    _, again = speed.ours_new_target(session, speed.SOURCE, fresh[1], s)
    assert set(again.values()) == {0}  # a cache hit: what (f) must never time
