"""The VAE-ceiling probe (object by object) and the object-weighted VAE fine-tune."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffedit_lab.toy import rich_checker, train, vae_ceiling, world
from diffedit_lab.toy.quality import rich_held_out_scenes


def test_probe_reads_true_images_right_and_misses_erased_objects():
    scenes = [s for s in rich_held_out_scenes(8) if not s.night][:4]
    truth = vae_ceiling.probe(np.stack([s.image for s in scenes]), scenes)
    n = sum(len(s.objects) for s in scenes)
    assert sum(int(v.split("/")[0]) for v in truth["objects"].values()) == n
    assert all(r == 1.0 for r in truth["scenes_ok_rate"].values())
    erased = vae_ceiling.probe(np.stack([s.backdrop.round().clip(0, 255).astype(np.uint8) for s in scenes]), scenes)
    assert sum(int(v.split("/")[0]) for v in erased["objects"].values()) == 0
    assert sum(int(v.split("/")[1]) for v in erased["objects"].values()) == n
    assert erased["background_psnr"] > erased["object_psnr"] + 10  # only objects (and their rims) differ


def test_weighted_l1_and_dilation():
    m = torch.zeros(1, 1, 5, 5)
    m[0, 0, 2, 2] = 1
    assert vae_ceiling.dilate(m, 1).sum() == 9 and vae_ceiling.dilate(m, 0).sum() == 1
    x, y = torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 5, 5)
    y[..., 2, 2] = 1.0  # an error only on the object pixel
    plain = vae_ceiling.weighted_l1(y, x, torch.ones_like(m))
    assert torch.isclose(plain, (y - x).abs().mean())
    assert vae_ceiling.weighted_l1(y, x, 1 + 10 * m) > 5 * plain


def test_tune_writes_a_train_py_checkpoint(tmp_path):
    torch.manual_seed(0)
    src = tmp_path / "src.pt"
    train.save_state(src, model=train.vae_model(64, 4).state_dict(), opt=None, step=7, loss=0.0)
    vae = vae_ceiling.tune(src, tmp_path / "out", 2, 4.0, scenes=8, batch=2)
    s = torch.load(tmp_path / "out" / "vae.pt", weights_only=False)
    assert {"model", "opt", "step", "loss"} <= set(s) and s["step"] == 9
    assert vae.config.scaling_factor > 0
    again = vae_ceiling.load_vae(tmp_path / "out" / "vae.pt")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), s["model"].values()))
    with pytest.raises(FileNotFoundError, match="no such VAE checkpoint"):
        vae_ceiling.load_vae(tmp_path / "missing.pt")


def test_small_range_variant_is_local(monkeypatch):
    monkeypatch.setitem(world.SIZE_RANGE, "small", world.SIZE_RANGE["small"])
    monkeypatch.setattr(rich_checker, "SMALL_MAX", rich_checker.SMALL_MAX)
    vae_ceiling.set_small_range(7.0, 9.0)
    smalls = [o.r for s in rich_held_out_scenes(12) for o in s.objects if o.size == "small"]
    assert smalls and min(smalls) >= 7.0 and rich_checker.SMALL_MAX == 0.5 * (9.0 + world.SIZE_RANGE["big"][0])


def test_cli_needs_a_vae():
    with pytest.raises(SystemExit):
        vae_ceiling.main(["probe"])


def test_edge_l1_sees_a_blurred_edge_more_than_the_l1():
    x = torch.zeros(1, 1, 2, 8)
    x[..., 4:] = 1.0  # a step
    blur = torch.tensor([0, 0, 0, 0.25, 0.75, 1, 1, 1]).expand(1, 1, 2, 8)
    w = torch.ones(1, 1, 2, 8)
    assert vae_ceiling.edge_l1(x, x, w) == 0
    assert vae_ceiling.weighted_l1(blur, x, w) == pytest.approx(0.5 / 8)  # the plain L1 barely sees it
    assert vae_ceiling.edge_l1(blur, x, w) == pytest.approx(0.5 * (1.0 / 7 + 0))


def test_decoder_only_tune_keeps_the_encoder(tmp_path):
    torch.manual_seed(0)
    src = tmp_path / "src.pt"
    start = train.vae_model(64, 4).state_dict()
    train.save_state(src, model=start, opt=None, step=0, loss=0.0)
    vae_ceiling.tune(src, tmp_path / "out", 2, 10.0, scenes=8, batch=2, decoder_only=True)
    s = torch.load(tmp_path / "out" / "vae.pt", weights_only=False)
    assert s["opt"] is None  # train.py's optimiser covers every parameter: no partial state
    enc = [k for k in start if k.startswith(("encoder.", "quant_conv."))]
    dec = [k for k in start if k.startswith("decoder.") and k.endswith("weight")]
    assert all(torch.equal(start[k], s["model"][k]) for k in enc)
    assert any(not torch.equal(start[k], s["model"][k]) for k in dec)


def test_tune_can_widen_the_latents_first(tmp_path):
    torch.manual_seed(0)
    src = tmp_path / "src.pt"
    train.save_state(src, model=train.vae_model(64, 4).state_dict(), opt=None, step=0, loss=0.0)
    vae_ceiling.tune(src, tmp_path / "out", 2, 10.0, scenes=8, batch=2, channels=8)
    again = vae_ceiling.load_vae(tmp_path / "out" / "vae.pt")
    assert again.config.latent_channels == 8
    assert again.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean.shape == (1, 8, 16, 16)
