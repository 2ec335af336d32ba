"""Training the rich-world model: warm start from the shipped model, checkpoints and --resume."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from diffedit_lab.toy import train
from diffedit_lab.toy.tokenizer import build_clip_tokenizer
from diffedit_lab.toy.world import VOCABULARY, make_edit, make_scene


def test_rich_mix_keeps_classic_scenes():
    worlds = [train.world_of(i, "rich", 0.25) for i in range(2000)]
    assert abs(worlds.count("classic") / 2000 - 0.25) < 0.01
    assert {train.world_of(i, "classic", 0.25) for i in range(100)} == {"classic"}
    i = worlds.index("classic")
    assert train.training_scene(i, 0, "rich").caption == make_scene(i).caption  # today's captions stay
    j = worlds.index("rich")
    assert train.training_scene(j, 0, "rich").caption == make_scene(j, "rich").caption


def test_warm_start_keeps_the_shipped_text_encoder_on_known_words(tmp_path):
    from transformers import CLIPTextModel, CLIPTokenizer

    words = list(reversed(VOCABULARY)) + ["pink", "hexagon"]  # other ids than the shipped tokenizer's, two new words
    tok = build_clip_tokenizer(words, tmp_path / "tok", model_max_length=train.RICH_MAX_LENGTH)
    init = train.warm_start(train.PACKAGE_MODEL, tok, train.RICH_MAX_LENGTH)
    new = train.text_model(len(tok), train.RICH_MAX_LENGTH)
    new.load_state_dict(init["te"])
    old = CLIPTextModel.from_pretrained(train.PACKAGE_MODEL / "text_encoder")
    old_tok = CLIPTokenizer.from_pretrained(train.PACKAGE_MODEL / "tokenizer")
    text = "a red circle and a blue square"
    ids_old = old_tok(text, return_tensors="pt").input_ids
    ids_new = tok(text, return_tensors="pt").input_ids
    assert ids_old.shape == ids_new.shape and not torch.equal(ids_old, ids_new)  # other token ids
    with torch.no_grad():
        a, b = old(ids_old)[0], new(ids_new)[0]
    assert torch.allclose(a, b, atol=1e-5)  # same meaning for today's captions
    assert len(tok(" ".join(words)).input_ids) == len(words) + 2  # every word one token


def test_quick_rich_run_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(SystemExit):  # nothing to resume yet
        train.main(["--quick", "--world", "rich", "--out", str(out), "--resume"])
    train.main(["--quick", "--world", "rich", "--out", str(out), "--ckpt-minutes", "0"])
    state = torch.load(out / "unet.pt", weights_only=False)
    assert state["step"] == 3 and {"opt", "ema_te", "ema_unet"} <= set(state)
    small = ["--scenes", "64", "--unet-scenes", "64", "--vae-steps", "3", "--batch", "4", "--vae-batch", "4"]
    train.main(["--world", "rich", "--out", str(out), "--resume", "--unet-steps", "5", *small])
    assert torch.load(out / "unet.pt", weights_only=False)["step"] == 5
    steps = [r["step"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["phase"] == "unet"]
    assert steps[-1] == 5 and 4 not in steps[:steps.index(3) + 1]  # went on from 3, did not restart
    (out / "words.json").write_text(json.dumps(["a", "b"]))
    with pytest.raises(SystemExit):  # another vocabulary: token ids would not match
        train.main(["--quick", "--world", "rich", "--out", str(out), "--resume"])


def test_a_run_widened_to_8_latent_channels_goes_on_from_the_old_one(tmp_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    old, new = tmp_path / "old", tmp_path / "new"
    train.main(["--quick", "--world", "rich", "--out", str(old)])
    with pytest.raises(SystemExit):
        train.main(["--quick", "--world", "rich", "--out", str(new), "--latent-channels", "0"])
    with pytest.raises(FileNotFoundError, match="no vae.pt there"):
        train.main(["--quick", "--world", "rich", "--out", str(new), "--widen-from", str(tmp_path / "nowhere"),
                    "--latent-channels", "8"])
    train.main(["--quick", "--world", "rich", "--out", str(new), "--widen-from", str(old), "--latent-channels", "8",
                "--export", str(new / "model")])
    assert "widened_from" in torch.load(new / "vae.pt", weights_only=False)  # phase 1 went on from the widened VAE
    assert AutoencoderKL.from_pretrained(new / "model" / "vae").config.latent_channels == 8
    unet = UNet2DConditionModel.from_pretrained(new / "model" / "unet")
    assert unet.config.in_channels == unet.config.out_channels == 8
    assert torch.load(new / "unet.pt", weights_only=False)["step"] == 3  # its whole (quick) schedule from step 0
    from diffedit_lab import edit, load_components

    c = load_components(new / "model")
    scene = make_scene(3, "rich")
    result = edit(c, scene.image, source=scene.caption, target=scene.caption.replace("a ", "a big ", 1), steps=2, n=1)
    assert c.latent_channels == 8 and result.mask.noisy_latents.shape[2:] == (8, 16, 16)
    assert result.mask.mask.shape[-2:] == (16, 16) and result.image is not None


def test_a_wider_unet_trains_exports_and_refuses_to_resume_at_another_width(tmp_path, capsys):
    out, folder = tmp_path / "run", tmp_path / "model"
    assert train.unet_model(8, width=32).config.block_out_channels == (32, 64, 64)
    train.main(["--quick", "--world", "rich", "--out", str(out), "--unet-width", "96", "--export", str(folder),
                "--ckpt-minutes", "0"])
    assert torch.load(out / "unet.pt", weights_only=False)["unet"]["conv_in.weight"].shape[0] == 96
    assert json.loads((folder / "unet" / "config.json").read_text())["block_out_channels"] == [96, 192, 192]
    with pytest.raises(SystemExit, match="width 96, not 64: pass --unet-width 96"):
        train.main(["--quick", "--world", "rich", "--out", str(out), "--resume", "--unet-steps", "5"])
    for bad in ("48", "0"):
        with pytest.raises(SystemExit):
            train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "other"), "--unet-width", bad])
        assert "--unet-width must be a positive multiple of 32" in capsys.readouterr().err


def test_object_coverage_is_each_latent_cells_share_of_the_scenes_objects():
    cover = train.object_coverage(6, 0, "rich", 0.25, 64, 4)
    assert cover.shape == (6, 1, 16, 16)
    for i in range(6):
        scene = train.training_scene(i, 0, "rich", 0.25, 64)
        union = sum(m.astype(int) for m in scene.masks) > 0
        assert cover[i].sum().item() * 16 == pytest.approx(union.sum())  # each cell is 4×4 pixels
        assert cover[i, 0, 5, 7].item() == pytest.approx(union[20:24, 28:32].mean())


def test_the_object_weight_raises_the_loss_on_the_objects_cells(tmp_path):
    from diffedit_lab.toy.tokenizer import build_clip_tokenizer
    from diffedit_lab.toy.world import VOCABULARY

    tokenizer = build_clip_tokenizer(VOCABULARY, tmp_path / "tok", model_max_length=24)
    scenes = [train.training_scene(i, 0, "rich", 0.25, 64) for i in range(4)]
    latents = (torch.randn(4, 4, 16, 16), torch.full((4, 4, 16, 16), 0.1))
    cover = train.object_coverage(4, 0, "rich", 0.25, 64, 4)
    losses = {}
    for lam in (0.0, 10.0):
        torch.manual_seed(0)
        out = tmp_path / f"run{lam}"
        out.mkdir()
        train.train_unet(train.vae_model(), tokenizer, latents, [s.caption for s in scenes], out, 1, 4, 0, 500,
                         None, 24, cover=cover, object_weight=lam)
        losses[lam] = torch.load(out / "unet.pt", weights_only=False)["loss"]
    assert losses[10.0] > losses[0.0] * 1.2  # the same first step, the objects' cells weighed 11×
    train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "quick"), "--object-weight", "4"])
    assert torch.load(tmp_path / "quick" / "objects_64.pt").shape == (64, 1, 16, 16)
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(SystemExit):
            train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "bad"), "--object-weight", bad])
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_a_factor_2_vae_gives_32x32_latents_and_a_unet_of_four_blocks(tmp_path, capsys, monkeypatch):
    """--vae-factor 2: a latent cell of 2×2 px; the UNet gets a first block of width/2 without
    attention, so its attention blocks stay at 16×16 and 8×8; the exported model edits."""
    import diffedit_lab as dl
    from diffedit_lab.metrics import RoundTripWarning

    out, folder = tmp_path / "run", tmp_path / "model"
    seen = {}
    real = train.train_unet

    def spy(*args, **kwargs):
        seen["init"] = inspect.signature(real).bind(*args, **kwargs).arguments["init"]
        return real(*args, **kwargs)

    sides = []
    real_schedule = train.scheduler_config
    monkeypatch.setattr(train, "scheduler_config", lambda side=16: sides.append(side) or real_schedule(side))
    monkeypatch.setattr(train, "train_unet", spy)
    train.main(["--quick", "--world", "rich", "--vae-factor", "2", "--out", str(out), "--export", str(folder),
                "--warm-start", str(train.PACKAGE_MODEL)])  # another geometry: the shipped text encoder only
    assert seen["init"]["unet"] is None and seen["init"]["vae"] is None
    tokenizer = build_clip_tokenizer(VOCABULARY, tmp_path / "tok", model_max_length=train.RICH_MAX_LENGTH)
    shipped = train.warm_start(train.PACKAGE_MODEL, tokenizer, train.RICH_MAX_LENGTH)["te"]
    assert all(torch.equal(v, seen["init"]["te"][k]) for k, v in shipped.items())
    monkeypatch.setattr(train, "train_unet", real)
    train.main(["--quick", "--world", "rich", "--vae-factor", "2", "--out", str(out), "--resume"])  # its first block
    assert torch.load(out / "unet.pt", weights_only=False)["step"] == 3  # is width/2: still the run's own width
    with pytest.raises(SystemExit, match="width 64, not 128: pass --unet-width 64"):
        train.main(["--quick", "--world", "rich", "--vae-factor", "2", "--out", str(out), "--resume",
                    "--unet-steps", "6", "--unet-width", "128"])
    unet = json.loads((folder / "unet" / "config.json").read_text())
    assert unet["block_out_channels"] == [32, 64, 128, 128] and unet["sample_size"] == 32
    assert unet["down_block_types"][0] == "DownBlock2D" and unet["up_block_types"][-1] == "UpBlock2D"
    assert json.loads((folder / "vae" / "config.json").read_text())["block_out_channels"] == [32, 64]
    state = torch.load(out / "vae.pt", weights_only=False)["model"]
    assert train.vae_from_state(state).config.block_out_channels == (32, 64)  # the factor read from the weights
    assert train.unet_model(16).config.block_out_channels == (64, 128, 128)  # 16×16 latents: as shipped
    assert sides == [32, 32, 32]  # the training's ᾱ_t, the export's scheduler, the resumed training's ᾱ_t
    c = dl.load_components(str(folder))
    shifted = real_schedule(32)["trained_betas"]
    assert json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["trained_betas"] == shifted
    for scheduler in (c.scheduler, c.inverse_scheduler):  # what inversion and decoding step with
        assert torch.equal(scheduler.betas, torch.tensor(shifted, dtype=torch.float32))
    e = make_edit(3, "size", world="rich")
    with pytest.warns(RoundTripWarning):  # three training steps: the VAE cannot represent it yet
        result = dl.edit(c, e.scene.image, e.source, e.target, steps=4, n=2, progress=False)
    assert result.mask.mask.shape[-2:] == (32, 32) and result.image.size == (64, 64)
    with pytest.raises(SystemExit):  # the first block has width/2 channels: 96/2 is no multiple of 32
        train.main(["--quick", "--world", "rich", "--vae-factor", "2", "--out", str(tmp_path / "odd"),
                    "--unet-width", "96"])
    assert "of 64 on latents of 32×32 or more" in capsys.readouterr().err


def test_a_finer_latent_grid_divides_every_snr_by_its_area_ratio():
    """scheduler_config(side): SD's schedule on 16×16 latents (the shipped model's, unchanged); on
    32×32 every SNR(t) = ᾱ/(1 − ᾱ) divided by (32/16)² = 4, so the grid's mean is as noisy as on 16×16."""
    from diffusers import DDIMScheduler

    base, fine = train.scheduler_config(16), train.scheduler_config(32)
    assert "trained_betas" not in base and base["beta_schedule"] == "scaled_linear"
    shipped = json.loads((train.PACKAGE_MODEL / "scheduler" / "scheduler_config.json").read_text())
    assert {k: shipped[k] for k in base} == base
    snr = [(a / (1 - a)).double() for a in (DDIMScheduler(**cfg).alphas_cumprod for cfg in (base, fine))]
    assert torch.allclose(snr[1] / snr[0], torch.full((1000,), 0.25, dtype=torch.float64), rtol=1e-3)
    assert torch.allclose(DDIMScheduler(**train.scheduler_config(64)).alphas_cumprod[-1:] / (1 - DDIMScheduler(
        **train.scheduler_config(64)).alphas_cumprod[-1:]), snr[0][-1:].float() / 16, rtol=1e-3)


def test_offset_noise_makes_each_channels_mean_noise_and_is_recorded_in_the_export(tmp_path):
    """draw_noise(σ): ε + σ·ε_c, one ε_c per sample and channel; σ = 0 is torch.randn as before (the
    shipped model's runs unchanged). On a 32×32 grid a per-cell ε's channel mean has std 1/32; with
    σ it has std √(σ² + 1/32²)."""
    shape = (256, 4, 32, 32)
    plain = train.draw_noise(shape, torch.Generator().manual_seed(3))
    assert torch.equal(plain, torch.randn(shape, generator=torch.Generator().manual_seed(3)))
    offset = train.draw_noise(shape, torch.Generator().manual_seed(3), 0.5)
    assert plain.mean(dim=(2, 3)).std().item() == pytest.approx(1 / 32, rel=0.1)
    assert offset.mean(dim=(2, 3)).std().item() == pytest.approx((0.25 + 1 / 32 ** 2) ** 0.5, rel=0.1)
    centred = offset - offset.mean(dim=(2, 3), keepdim=True)  # the offset is constant within a channel
    assert centred.std().item() == pytest.approx(1.0, rel=0.02)
    folder = tmp_path / "model"
    train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "run"), "--offset-noise", "0.1",
                "--export", str(folder)])
    assert json.loads((folder / "training.json").read_text()) == {"unet_steps": 3, "offset_noise": 0.1}
    for bad in ("-0.1", "nan", "inf"):
        with pytest.raises(SystemExit):
            train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "bad"), "--offset-noise", bad])
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_sd_levels_train_a_share_of_each_batch_at_stable_diffusions_noise_levels(tmp_path):
    """sd_noise_levels(side)[u]: the first step of the side's schedule whose SNR is at most SD's at u
    (on 16×16 the identity); --sd-levels p draws that step for a share p of the batch, p = 0 is
    plain randint (the runs so far unchanged); the export records p, and a share outside 0–1 is refused."""
    from diffusers import DDIMScheduler

    def snr(side):
        a = DDIMScheduler(**train.scheduler_config(side)).alphas_cumprod.double()
        return a / (1 - a)

    assert torch.equal(train.sd_noise_levels(16), torch.arange(1000))
    to_own, own, sd = train.sd_noise_levels(32), snr(32), snr(16)
    assert (own[to_own] <= sd).all() and (own[to_own - 1][to_own > 0] > sd[to_own > 0]).all()
    assert to_own[-1] < 900 and to_own[500] < 300  # SD's noisiest step is ÷4's t ≈ 875
    g = lambda: torch.Generator().manual_seed(5)
    assert torch.equal(train.draw_timesteps(64, g()), torch.randint(0, 1000, (64,), generator=g()))
    every = train.draw_timesteps(20_000, g(), 1.0, to_own)
    assert every.max() <= to_own[-1] and torch.isin(every, to_own).all()
    half = train.draw_timesteps(20_000, g(), 0.5, to_own)
    assert (half > to_own[-1]).float().mean().item() == pytest.approx(0.5 * (999 - to_own[-1].item()) / 1000, abs=0.01)
    folder = tmp_path / "model"
    train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "run"), "--sd-levels", "0.5",
                "--export", str(folder)])
    assert json.loads((folder / "training.json").read_text()) == {"unet_steps": 3, "sd_levels": 0.5}
    for bad in ("-0.1", "1.5", "nan"):
        with pytest.raises(SystemExit):
            train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "bad"), "--sd-levels", bad])
    assert not (tmp_path / "bad").exists()


def unet_batch_sizes(monkeypatch) -> list[int]:
    """The batch size of every forward call of the UNets ``train`` builds from now on."""
    calls, make = [], train.unet_model

    def counted(*args, **kw):
        unet = make(*args, **kw)
        unet.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
        return unet

    monkeypatch.setattr(train, "unet_model", counted)
    return calls


def test_order_loss_charges_a_model_that_ignores_the_captions_order(tmp_path, monkeypatch):
    """order_loss: the hinge max(0, m − gap) on the relative rise of the ε-error when the caption is
    reversed — m for a bag-of-objects model (gap 0), 0 once the reversed caption costs more than m;
    --order-weight adds it for the captions of two or more objects (a second UNet call on them),
    records it in the export, and refuses bad values."""
    eps = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    pred = eps + 0.1 * torch.randn(eps.shape, generator=torch.Generator().manual_seed(1))
    assert train.order_loss(pred, pred, eps).item() == pytest.approx(train.ORDER_MARGIN)
    worse = eps + 2 * (pred - eps)  # twice the error, four times its square: gap 3
    assert train.order_loss(pred, worse, eps).item() == 0.0
    assert train.order_loss(worse, pred, eps).item() > train.ORDER_MARGIN  # the true caption worse
    calls = unet_batch_sizes(monkeypatch)
    folder = tmp_path / "model"
    train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "run"), "--order-weight", "0.05",
                "--export", str(folder)])
    assert len(calls) > 3 and sum(calls) > 3 * 4  # three batches of 4, plus their reversible captions
    assert json.loads((folder / "training.json").read_text()) == {"unet_steps": 3, "order_weight": 0.05,
                                                                  "order_margin": train.ORDER_MARGIN}
    for bad in (["--order-weight", "-1"], ["--order-weight", "nan"], ["--order-margin", "0"]):
        with pytest.raises(SystemExit):
            train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "bad"), *bad])
    assert not (tmp_path / "bad").exists()


def test_count_loss_charges_a_model_that_ignores_a_missing_object(tmp_path, monkeypatch):
    """count_loss: the order loss's hinge with the caption one object short — m when leaving an
    object out of the caption costs nothing, 0 once it costs more than m; --count-weight adds it for
    the captions of two or more objects (one more UNet call on them),
    records it in the export, and refuses bad values."""
    eps = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    pred = eps + 0.1 * torch.randn(eps.shape, generator=torch.Generator().manual_seed(1))
    assert train.count_loss(pred, pred, eps).item() == pytest.approx(train.COUNT_MARGIN)
    assert train.count_loss(pred, eps + 2 * (pred - eps), eps).item() == 0.0
    assert train.count_loss(pred, pred, eps, margin=0.3).item() == pytest.approx(0.3)
    calls, shortened, short = unet_batch_sizes(monkeypatch), [], train.short_caption

    def recorded(text):
        shortened.append((text, short(text)))
        return shortened[-1][1]

    monkeypatch.setattr(train, "short_caption", recorded)
    folder = tmp_path / "model"
    train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "run"), "--count-weight", "0.05",
                "--export", str(folder)])
    assert len(shortened) == 64  # every training caption, once
    assert any(a != b for a, b in shortened)  # some name two or more objects
    assert len(calls) > 3 and sum(calls) > 3 * 4  # three batches of 4, plus their captions one object short
    assert json.loads((folder / "training.json").read_text()) == {"unet_steps": 3, "count_weight": 0.05,
                                                                  "count_margin": train.COUNT_MARGIN}
    for bad in (["--count-weight", "-1"], ["--count-weight", "inf"], ["--count-margin", "0"]):
        with pytest.raises(SystemExit):
            train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "bad"), *bad])
    assert not (tmp_path / "bad").exists()


def test_bf16_trains_the_forward_in_bfloat16_and_keeps_float32_weights(tmp_path, monkeypatch):
    """--bf16: the UNet's forward runs under CPU autocast (its convolutions compute in bfloat16),
    while the weights, the EMA and the exported model stay float32; the export records it."""
    seen = []
    make = train.unet_model

    def watched(*args, **kw):
        unet = make(*args, **kw)
        unet.conv_in.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        return unet

    monkeypatch.setattr(train, "unet_model", watched)
    folder = tmp_path / "model"
    train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "run"), "--bf16", "--export", str(folder)])
    assert seen[:3] == [torch.bfloat16] * 3  # the three training steps
    assert json.loads((folder / "training.json").read_text()) == {"unet_steps": 3, "bf16": True}
    state = torch.load(tmp_path / "run" / "unet.pt", weights_only=False)
    assert {v.dtype for v in state["unet"].values()} == {torch.float32}
    assert {v.dtype for v in state["ema_unet"].values()} == {torch.float32}
    seen.clear()
    train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "plain")])
    assert seen[:3] == [torch.float32] * 3  # without the flag: float32 as before


def test_device_is_checked_before_any_work_and_a_seed_trains_the_same_on_it(tmp_path, capsys):
    """--device names where the networks train, checked before anything is written (the same
    one-line errors as the CLI's); every draw is made on the CPU, so with one seed a run on an
    explicit --device cpu writes the same weights as the default run here."""
    bad = ["--device", "nosuch"] if torch.cuda.is_available() else ["--device", "cuda"]
    for flag in (["--device", "nosuch"], bad):
        with pytest.raises(SystemExit):
            train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "bad"), *flag])
        assert "--device=" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    if torch.cuda.is_available():
        return  # the default there is CUDA: the comparison below is the CPU's
    train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "default")])
    train.main(["--quick", "--world", "rich", "--out", str(tmp_path / "cpu"), "--device", "cpu"])
    a, b = (torch.load(tmp_path / run / "unet.pt", weights_only=False) for run in ("default", "cpu"))
    assert a["step"] == b["step"] == 3
    assert all(torch.equal(a["unet"][k], b["unet"][k]) for k in a["unet"])
    assert not all(torch.equal(a["unet"][k], a["ema_unet"][k]) for k in a["unet"])  # it did train


def test_checkpoints_hold_cpu_tensors_at_every_depth():
    """save_state writes what on_cpu returns: every tensor of nested dicts, lists and tuples moved
    to the CPU (a checkpoint written on a GPU loads where there is none); other values untouched."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    state = {"a": torch.ones(2, device=device), "opt": {"state": {0: {"exp_avg": torch.zeros(3, device=device)}},
                                                        "param_groups": [{"params": [0], "lr": 1e-3}]},
             "pair": (torch.ones(1, device=device), 5), "step": 7}
    moved = train.on_cpu(state)
    assert moved["a"].device.type == moved["opt"]["state"][0]["exp_avg"].device.type == "cpu"
    assert moved["pair"][0].device.type == "cpu" and moved["pair"][1] == 5 and isinstance(moved["pair"], tuple)
    assert moved["opt"]["param_groups"] == state["opt"]["param_groups"] and moved["step"] == 7
