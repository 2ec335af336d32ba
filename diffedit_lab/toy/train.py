"""Train the embedded shapes-world model: a small, genuine Stable Diffusion checkpoint.

    python -m diffedit_lab.toy.train [--out runs/toy] [--vae-steps N] [--unet-steps N] [--quick]
    python -m diffedit_lab.toy.train --world rich --warm-start diffedit_lab/toy/model --out runs/world13 ...

``--world classic`` (default) trains on the classic shapes world, as the shipped model was;
``--world rich`` on a mix of the rich world and the classic one (``--classic-fraction`` of the
scenes are classic, so today's captions stay in the training mix), with the rich world's
vocabulary and 24-token captions. ``--warm-start DIR`` starts every part from an exported
model (the shipped one): the VAE and UNet as they are, the text encoder's token embeddings
copied by token string (new words start at the mean embedding) and its position embeddings
extended by repeating the last one; with another geometry (``--vae-factor``, ``--image-size``)
only the text encoder carries over.

Two phases, each resumable from its last checkpoint in ``--out`` (saved every
``--ckpt-minutes`` with the optimiser and EMA state; ``--resume`` insists on one):

1. **VAE** (``AutoencoderKL``, 64×64×3 → 16×16×4; ``--vae-factor 2``: → 32×32×4): minimise
   ``‖x − D(z)‖₁ + β·KL(q(z|x) ‖ N(0, I))`` with ``z ~ q(z|x)`` and a small β, as in
   Stable Diffusion. The latent scaling factor is then set to ``1 / std(z)``.
2. **Text encoder + UNet** (``CLIPTextModel`` + ``UNet2DConditionModel``), trained jointly on
   the frozen VAE's latents with the DDPM objective
   ``E ‖ε − ε_θ(√ᾱ_t z₀ + √(1−ᾱ_t) ε, t, τ(y))‖²``, min-SNR-γ weighted, with the caption ``y``
   dropped to the empty text 10 % of the time (classifier-free guidance), and an EMA copy of
   the weights that is the one exported. ``--object-weight λ`` weighs each latent cell's
   squared error by ``1 + λ·c``, ``c`` the share of the cell the scene's objects cover, so the
   objects (a few percent of the cells, but all that an object edit changes) count as much as
   the textured background around them. ``ᾱ_t`` is Stable Diffusion's schedule on 16×16
   latents; on 32×32 ones every SNR is divided by 4 (:func:`scheduler_config`), and the export's
   scheduler carries the same ``ᾱ_t``. ``--offset-noise σ`` adds a per-channel constant
   ``σ·ε_c`` to ε (:func:`draw_noise`), so that z_t's overall colour is noise at high t and the
   model takes it from the text instead. ``--sd-levels p`` trains a share ``p`` of each batch at
   the noise levels SD's unshifted schedule visits (:func:`sd_noise_levels`). ``--order-weight λ``
   adds :func:`order_loss`, which asks the ε-error to rise when the caption names the objects in
   reverse (a model can otherwise draw the right objects in any order); ``--count-weight λ`` adds
   :func:`count_loss`, the same with the caption one object short.

``--export DIR`` writes a diffusers folder (``save_pretrained``) that both
``diffedit_lab.load_components`` and diffusers' own pipelines load, plus ``diffedit_lab.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffedit_lab.models import check_device, default_device
from diffedit_lab.toy.tokenizer import build_clip_tokenizer
from diffedit_lab.toy.world import VOCABULARY, WORDS, make_scene, reverse_caption, short_caption

MAX_LENGTH = 16  # tokens, classic world ("a red circle and a blue square" is 9 with BOS/EOS)
RICH_MAX_LENGTH = 24  # rich world: three named sizes, a background and "at night" take 21
PACKAGE_MODEL = Path(__file__).parent / "model"
# Settings recorded with the model: edit() uses them as its defaults for this model.
DIFFEDIT_DEFAULTS = {"guidance": 5.0, "inversion_guidance": 1.0, "mask_strength": 0.5,
                     "n": 10, "clamp_ratio": 3.0, "threshold": 0.5, "strength": 0.8, "steps": 50}


def vae_model(size: int = 64, factor: int = 4, latent_channels: int = 4):
    """``size``×``size``×3 → (size/factor)²×``latent_channels`` (4, as SD and the shipped model);
    factor 2: two blocks (32, 64), a latent cell of 2×2 px; factor 4: three (32, 64, 64), as shipped;
    factor 8: four (32, 64, 64, 64), SD's factor."""
    from diffusers import AutoencoderKL

    blocks = {2: (32, 64), 4: (32, 64, 64), 8: (32, 64, 64, 64)}[factor]
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels, sample_size=size,
        down_block_types=("DownEncoderBlock2D",) * len(blocks), up_block_types=("UpDecoderBlock2D",) * len(blocks),
        block_out_channels=blocks, layers_per_block=1, norm_num_groups=16,
    )


def text_model(vocab_size: int, max_length: int = MAX_LENGTH):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=128, intermediate_size=512, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=max_length, projection_dim=128,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    ))


def vae_from_state(state: dict, size: int = 64, factor: int | None = None):
    """:func:`vae_model` with ``state``'s weights, as many latent channels as they have; the
    factor (default) from its blocks: 2^(blocks − 1)."""
    blocks = len({key.split(".")[2] for key in state if key.startswith("encoder.down_blocks.")})
    vae = vae_model(size, factor or 2 ** (blocks - 1), state["post_quant_conv.weight"].shape[0])
    vae.load_state_dict(state)
    return vae


UNET_WIDTH = 64
"""Channels of the UNet's first block (the shipped model's); the two deeper blocks have twice as many."""
HALF_BLOCK_FROM = 32
"""Latents of this side or more get one more UNet block of ``width/2`` channels first (:func:`unet_model`)."""


def unet_model(sample_size: int = 16, channels: int = 4, width: int = UNET_WIDTH):
    """The toy UNet: blocks of ``width``, ``2·width``, ``2·width`` channels (64/128/128 shipped;
    ``width`` a multiple of 32, the group norm's groups), cross-attention at the two finer ones.
    On latents of 32×32 or more (a factor-2 VAE) one more block of ``width/2`` channels, without
    attention, comes first: the blocks with attention then work at 16×16 and 8×8 as shipped, and
    a UNet call costs ≈ 1.2× the 16×16 one instead of 4×."""
    from diffusers import UNet2DConditionModel

    blocks = (width, 2 * width, 2 * width)
    down = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    up = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
    if sample_size >= HALF_BLOCK_FROM:
        blocks, down, up = (width // 2, *blocks), ("DownBlock2D", *down), (*up, "UpBlock2D")
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels, layers_per_block=1,
        block_out_channels=blocks, down_block_types=down, up_block_types=up,
        cross_attention_dim=128, attention_head_dim=8, norm_num_groups=32,
    )


BASE_LATENT = 16
"""The latent side at which Stable Diffusion's schedule is used as it is (the shipped model's)."""


def scheduler_config(latent_size: int = BASE_LATENT) -> dict:
    """Stable Diffusion's DDPM schedule (scaled-linear β from 0.00085 to 0.012, ᾱ_T ≈ 0.005) for
    latents of side ``latent_size``; on a finer grid every signal-to-noise ratio is divided by
    ``(latent_size / 16)²`` ("simple diffusion", Hoogeboom et al. 2023), written as ``trained_betas``:

        SNR'(t) = SNR(t)·(16 / side)²,  ᾱ'_t = SNR'/(1 + SNR'),  β'_t = 1 − ᾱ'_t / ᾱ'_{t−1}

    Why: noise is independent per cell, so the mean over the 32×32 grid keeps 1/32 of its std
    where the 16×16 grid keeps 1/16, while the image's own mean (its overall colour) is the same;
    with SD's schedule a 32×32 model still sees that colour at t = T, learns to copy it from
    z_T instead of drawing it from the text, and then paints "on grass" in whatever colour the
    noise happens to hold (and keeps the old colour in a background edit). Dividing the SNR by 4
    makes the 32×32 grid's mean as noisy at every t as the 16×16 grid's. (Not enough on its own
    for the factor-2 run, whose UNet had learnt the habit first: see :func:`draw_noise`.)"""
    import torch
    from diffusers import DDIMScheduler

    config = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                  beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                  steps_offset=1, prediction_type="epsilon")
    shift = (BASE_LATENT / latent_size) ** 2
    if shift < 1:
        alpha_bar = DDIMScheduler(**config).alphas_cumprod.double()
        snr = alpha_bar / (1 - alpha_bar) * shift
        alpha_bar = snr / (1 + snr)
        betas = 1 - alpha_bar / torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        config["trained_betas"] = betas.tolist()
    return config


def world_of(i: int, world: str, classic_fraction: float) -> str:
    """Which world training scene ``i`` is drawn from: in the rich mix, scene i is classic when
    ``(i · 0.618…) mod 1 < classic_fraction`` (an even, deterministic spread)."""
    if world == "classic":
        return "classic"
    return "classic" if (i * 0.6180339887) % 1.0 < classic_fraction else "rich"


def training_scene(i: int, seed: int, world: str = "classic", classic_fraction: float = 0.25, size: int = 64):
    """Training scene ``i``: ``make_scene(seed + i, world_of(i))`` at ``size`` px (a classic
    scene drawn at 64 px is resized bicubically for other sizes)."""
    w = world_of(i, world, classic_fraction)
    scene = make_scene(seed + i, w, size) if w == "rich" else make_scene(seed + i)
    if scene.image.shape[0] != size:
        from PIL import Image

        scene.image = np.asarray(Image.fromarray(scene.image).resize((size, size), Image.BICUBIC))
    return scene


def dataset(n: int, seed: int, cache: Path, world: str = "classic", classic_fraction: float = 0.25,
            size: int = 64) -> tuple[np.ndarray, list[str]]:
    """``n`` rendered scenes (uint8 N×size×size×3) and captions; scene i is
    :func:`training_scene` ``(i)`` (``make_scene(seed + i)`` in the classic world)."""
    if cache.exists():
        d = np.load(cache)
        if len(d["images"]) == n:
            return d["images"], list(d["captions"])
    scenes = [training_scene(i, seed, world, classic_fraction, size) for i in tqdm(range(n), desc="render scenes", mininterval=30)]
    images = np.stack([s.image for s in scenes])
    captions = [s.caption for s in scenes]
    np.savez(cache, images=images, captions=np.array(captions))
    return images, captions


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def on_cpu(value):
    """``value`` with every tensor in it (nested dicts, lists) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(v) for v in value)
    return value


def save_state(path: Path, **state) -> None:
    """Write a checkpoint atomically, its tensors on the CPU (so it loads on a machine without a GPU)."""
    tmp = path.with_suffix(".tmp")
    torch.save(on_cpu(state), tmp)
    tmp.replace(path)


def set_lr(opt, step: int, steps: int, *, warmup: int, floor: float, peak: float = 1e-3) -> None:
    """Linear warm-up, then cosine decay to ``floor · peak``:
    ``lr = peak · min(1, (step+1)/warmup) · (floor + (1 − floor)·½(1 + cos(π·step/steps)))``."""
    lr = peak * min(1.0, (step + 1) / warmup) * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * step / steps)))
    for group in opt.param_groups:
        group["lr"] = lr


def random_crops(x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """One random ``size``×``size`` crop per image (the VAE is convolutional: crops train it
    as well as whole images, at a fraction of the cost)."""
    if size >= x.shape[-1]:
        return x
    ii, jj = torch.randint(0, x.shape[-1] - size + 1, (2, len(x)), generator=g).tolist()
    return torch.stack([im[:, a : a + size, b : b + size] for im, a, b in zip(x, ii, jj)])


class Clock:
    """True every ``minutes`` of wall time (checkpoint cadence that does not depend on speed)."""

    def __init__(self, minutes: float):
        self.every, self.last = minutes * 60, time.time()

    def due(self) -> bool:
        if time.time() - self.last >= self.every:
            self.last = time.time()
            return True
        return False


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [−1, 1] (peak-to-peak 2): ``10·log10(4 / MSE)``."""
    return float(10 * torch.log10(4 / ((a.clamp(-1, 1) - b) ** 2).mean()))


@torch.no_grad()
def round_trip_psnr(vae, images: np.ndarray) -> float:
    """Mean PSNR of encode (posterior mean) → decode over ``images`` (the VAE's ceiling)."""
    vals = []
    for i in range(0, len(images), 32):
        x = to_tensor(images[i : i + 32])
        vals.append(psnr(vae.decode(vae.encode(x).latent_dist.mean).sample, x) * len(x))
    return sum(vals) / len(images)


def train_vae(images: np.ndarray, out: Path, steps: int, batch: int, seed: int, crop: int = 32,
              size: int = 64, factor: int = 4, init: dict | None = None, ckpt_minutes: float = 10.0,
              latent_channels: int = 4, device: str | torch.device = "cpu"):
    """Phase 1; returns the trained VAE (on the CPU) with its scaling factor set. ``init``: a state
    dict to start from (a warm start) when there is no checkpoint yet. ``device``: where it trains
    (the batches are drawn on the CPU, so a seed draws the same ones on any device)."""
    dev = torch.device(device)
    vae = vae_model(size, factor, latent_channels)
    if init is not None:
        vae.load_state_dict(init)
    vae.to(dev)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    peak = 3e-4 if init is not None else 1e-3  # a warm start is fine-tuned gently
    ckpt, start = out / "vae.pt", 0
    if ckpt.exists():
        s = torch.load(ckpt, weights_only=False, map_location=dev)
        vae.load_state_dict(s["model"])
        if s["opt"] is not None:
            opt.load_state_dict(s["opt"])
        start = s["step"]
    g = torch.Generator().manual_seed(seed + start)
    clock = Clock(ckpt_minutes)
    bar = tqdm(range(start, steps), desc="VAE", initial=start, total=steps, mininterval=30)
    for step in bar:
        set_lr(opt, step, steps, warmup=50, floor=0.1, peak=peak)
        x = random_crops(to_tensor(images[torch.randint(len(images), (batch,), generator=g).numpy()]), crop, g).to(dev)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(g)).sample
        loss = (recon - x).abs().mean() + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(l1=f"{loss.item():.4f}", refresh=False)
        if (step + 1) % 200 == 0 or step + 1 == steps or clock.due():
            save_state(ckpt, model=vae.state_dict(), opt=opt.state_dict(), step=step + 1, loss=loss.item())
            log(out, "events.jsonl", phase="vae", step=step + 1, loss=loss.item())
    vae.eval()
    with torch.no_grad():
        z = torch.cat([vae.encode(to_tensor(images[i : i + 256]).to(dev)).latent_dist.sample(g)
                       for i in range(0, min(2048, len(images)), 256)])
    vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    return vae.to("cpu")


def log(out: Path, name: str = "log.jsonl", **record) -> None:
    """Append one JSON line (with the wall time) to ``out/name``: UNet steps to ``log.jsonl``,
    the run's starts and VAE checkpoints to ``events.jsonl``."""
    with open(out / name, "a") as f:
        f.write(json.dumps({**record, "time": time.time()}) + "\n")


@torch.no_grad()
def encode_all(vae, images: np.ndarray, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image (on the CPU), for sampling latents cheaply during
    phase 2; encoded on ``device``, the VAE left on the CPU."""
    means, stds = [], []
    vae.to(device)
    for i in tqdm(range(0, len(images), 512), desc="encode latents"):
        d = vae.encode(to_tensor(images[i : i + 512]).to(device)).latent_dist
        means.append(d.mean.cpu()), stds.append(d.std.cpu())
    vae.to("cpu")
    return torch.cat(means), torch.cat(stds)


def object_coverage(n: int, seed: int, world: str = "classic", classic_fraction: float = 0.25,
                    size: int = 64, factor: int = 4) -> torch.Tensor:
    """N×1×(size/factor)² share of each latent cell that training scene ``i``'s objects cover
    (:func:`training_scene`'s pixel masks, averaged over the factor×factor pixels of the cell)."""
    cover = np.zeros((n, 1, size // factor, size // factor), np.float32)
    for i in tqdm(range(n), desc="object masks", mininterval=30):
        scene = training_scene(i, seed, world, classic_fraction, size)
        objects = ~scene.background_mask  # the union of the objects' masks
        h = objects.shape[0] // (size // factor)
        cover[i, 0] = objects.reshape(size // factor, h, size // factor, h).mean(axis=(1, 3))
    return torch.from_numpy(cover)


def cached(path: Path, make):
    """``make()``, saved to ``path`` the first time and loaded from it afterwards."""
    if path.exists():
        return torch.load(path)
    value = make()
    torch.save(value, path)
    return value


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``θ_ema ← θ_ema + (1 − decay)·(θ − θ_ema)`` for every parameter (one fused call)."""
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)


def draw_noise(shape: tuple, generator: torch.Generator, offset: float = 0.0) -> torch.Tensor:
    """ε for the training loss: ``ε = ε_cell + σ·ε_c``, with ``ε_c ~ N(0, 1)`` one number per sample
    and channel (offset noise, Guttenberg 2023). A per-cell ε averages out over a 32×32 grid, so
    z_t's per-channel mean keeps the clean image's overall colour up to t = T, and a model learns
    to read it there rather than the text; σ makes that mean noise too. σ = 0: plain ``randn``."""
    eps = torch.randn(shape, generator=generator)
    if offset:
        eps_c = torch.randn((*shape[:2], 1, 1), generator=generator)
        eps = eps + offset * eps_c
    return eps


def sd_noise_levels(latent_size: int) -> torch.Tensor:
    """For each step ``u`` of Stable Diffusion's unshifted schedule, the step of this grid's
    schedule (:func:`scheduler_config`) with the same noise level — the first ``t`` whose SNR is at
    most SD's at ``u``:

        t(u) = min { t : SNR_side(t) ≤ SNR_SD(u) }   (on 32×32, SNR_side = SNR_SD / 4, so t(u) ≤ u)

    Training at ``t(u)`` for ``u`` drawn uniformly spends the steps at the noise levels SD's schedule
    visits, labelled as this model's sampler will meet them; on 16×16 latents ``t(u) = u``."""
    from diffusers import DDIMScheduler

    def snr(side):
        a = DDIMScheduler(**scheduler_config(side)).alphas_cumprod.double()
        return a / (1 - a)

    return torch.searchsorted(-snr(latent_size), -snr(BASE_LATENT)).clamp(max=999)


def draw_timesteps(batch: int, generator: torch.Generator, sd_levels: float = 0.0,
                   to_own: torch.Tensor | None = None) -> torch.Tensor:
    """Training steps ``t`` uniform in 0…999; with ``sd_levels`` p, each one with probability p is
    ``to_own[u]`` (:func:`sd_noise_levels`) for a uniform ``u`` instead. p = 0: plain ``randint``."""
    t = torch.randint(0, 1000, (batch,), generator=generator)
    if sd_levels:
        t = torch.where(torch.rand(batch, generator=generator) < sd_levels, to_own[t], t)
    return t


ORDER_MARGIN = 0.1
"""The order loss's margin: the shipped model's ε-error rises by 17–59 % when its captions name the
objects in reverse (:mod:`diffedit_lab.toy.order_probe`)."""


def order_loss(pred: torch.Tensor, pred_rev: torch.Tensor, eps: torch.Tensor, margin: float = ORDER_MARGIN) -> torch.Tensor:
    """A hinge on how much worse the prediction with the caption reversed is than with the true one:

        gap = (‖ε − ε̂(y′)‖² − ‖ε − ε̂(y)‖²) / sg(‖ε − ε̂(y)‖²),   L = mean(max(0, m − gap))

    ``y′`` names the same objects right to left (the mirrored scene's caption), so no model can
    lower ``L`` without relating the caption's order to where the objects are; one that reads the
    caption as a bag of objects has gap 0 and pays ``m``. ``sg``: no gradient."""
    err = ((pred - eps) ** 2).mean(dim=(1, 2, 3))
    err_rev = ((pred_rev - eps) ** 2).mean(dim=(1, 2, 3))
    gap = (err_rev - err) / err.detach()
    return F.relu(margin - gap).mean()


COUNT_MARGIN = 0.1
"""The count loss's margin (the order loss's); at t 850–950, where an edit's decoding starts, the
models of December 2026 pay −1 to +15 % for a caption one object short (``toy.order_probe --caption
short``; model card, *Does it count?*)."""


def count_loss(pred: torch.Tensor, pred_short: torch.Tensor, eps: torch.Tensor, margin: float = COUNT_MARGIN) -> torch.Tensor:
    """:func:`order_loss`'s hinge with ``y′`` the caption one object short (the last named left out,
    :func:`~diffedit_lab.toy.world.short_caption`):

        gap = (‖ε − ε̂(y′)‖² − ‖ε − ε̂(y)‖²) / sg(‖ε − ε̂(y)‖²),   L = mean(max(0, m − gap))

    A model that draws an object whether or not the caption names it — and so fills a removed
    object's hole with another of the caption's objects — has gap 0 and pays ``m``."""
    return order_loss(pred, pred_short, eps, margin)


def contrast_ids(tokenizer, captions: list[str], ids: torch.Tensor, rewrite, max_length: int):
    """The token ids of each caption rewritten (``reverse_caption``, ``short_caption``) and which
    captions the rewrite changes (only those can be charged a contrast hinge)."""
    other = tokenizer([rewrite(c) for c in captions], padding="max_length", max_length=max_length,
                      truncation=True, return_tensors="pt").input_ids
    return other, (other != ids).any(dim=1)


def train_unet(vae, tokenizer, latents, captions, out: Path, steps: int, batch: int, seed: int,
               export_every: int, export_to: Path | None, max_length: int = MAX_LENGTH,
               init: dict | None = None, ckpt_minutes: float = 10.0, peak_lr: float = 1e-3,
               width: int = UNET_WIDTH, cover: torch.Tensor | None = None, object_weight: float = 0.0,
               offset_noise: float = 0.0, bf16: bool = False, sd_levels: float = 0.0,
               order_weight: float = 0.0, order_margin: float = ORDER_MARGIN,
               device: str | torch.device = "cpu", count_weight: float = 0.0, count_margin: float = COUNT_MARGIN):
    """Phase 2: text encoder + UNet with the (min-SNR weighted) ε-prediction loss. ``init``:
    ``{"te": state, "unet": state}`` to start from when there is no checkpoint yet. ``cover``
    (:func:`object_coverage` of the latents' scenes) and ``object_weight`` λ: each cell's
    squared error weighed by ``1 + λ·cover``. ``offset_noise``: σ of :func:`draw_noise`.
    ``bf16``: the forward pass under ``torch.autocast(device, torch.bfloat16)`` (mixed precision:
    weights, optimiser, EMA and the loss stay float32) — on CPUs with AMX or AVX-512 BF16 it is
    faster: 0.9 s against 1.3–1.45 s per step for the 32×32-latent UNet at batch 32 on 2 threads
    (model card, ``runs/f2b``). ``sd_levels``: the share of each batch whose noise levels follow
    Stable Diffusion's unshifted schedule (:func:`sd_noise_levels`); the rest, and all when 0, are
    uniform in this grid's ``t``. ``order_weight`` λ: add :func:`order_loss` for the samples whose
    caption names two or more objects (not dropped for guidance); ``count_weight`` λ: add
    :func:`count_loss` for those of two or more objects (one more UNet call on them). ``device``: where the networks
    train; every random draw is made on the CPU, so a seed gives the same batches on any device."""
    from diffusers import DDIMScheduler

    mean, std = latents
    sf = vae.config.scaling_factor
    dev = torch.device(device)
    te, unet = text_model(len(tokenizer), max_length), unet_model(mean.shape[-1], mean.shape[1], width)
    if init is not None:
        te.load_state_dict(init["te"])
        if init["unet"] is not None:
            unet.load_state_dict(init["unet"])
    te.to(dev), unet.to(dev)
    params = list(te.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=peak_lr, weight_decay=1e-2, fused=dev.type == "cuda" or None)
    ema_te, ema_unet = copy.deepcopy(te), copy.deepcopy(unet)
    ckpt, start = out / "unet.pt", 0
    if ckpt.exists():
        s = torch.load(ckpt, weights_only=False, map_location=dev)
        had = s["unet"]["conv_in.weight"].shape[0]  # the first block's channels: width, or width/2 on 32×32 latents
        if had != unet.conv_in.out_channels:
            was = had * width // unet.conv_in.out_channels
            raise SystemExit(f"{ckpt} holds a UNet of width {was}, not {width}: pass --unet-width {was} to go on "
                             "with it, or train the new width into a new --out")
        te.load_state_dict(s["te"]), unet.load_state_dict(s["unet"])
        if s["opt"] is not None:
            opt.load_state_dict(s["opt"])
        ema_te.load_state_dict(s["ema_te"]), ema_unet.load_state_dict(s["ema_unet"])
        start = s["step"]
    ids = tokenizer([""] + captions, padding="max_length", max_length=max_length, truncation=True,
                    return_tensors="pt").input_ids
    empty, ids = ids[:1], ids[1:]
    # the contrast hinges: (logged name, λ, m, hinge, contrasting captions' ids, captions they change)
    contrasts = []
    if order_weight:  # each caption with its objects named right to left (the mirrored scene's)
        contrasts.append(("order_loss", order_weight, order_margin, order_loss,
                          *contrast_ids(tokenizer, captions, ids, reverse_caption, max_length)))
    if count_weight:  # each caption with its last-named object left out
        contrasts.append(("count_loss", count_weight, count_margin, count_loss,
                          *contrast_ids(tokenizer, captions, ids, short_caption, max_length)))
    alphas = DDIMScheduler(**scheduler_config(mean.shape[-1])).alphas_cumprod  # ᾱ_t, the training schedule
    snr = alphas / (1 - alphas)
    g = torch.Generator().manual_seed(seed + start)
    clock, t0, s0 = Clock(ckpt_minutes), time.time(), start
    noted = {"offset_noise": offset_noise} if offset_noise else {}  # in the export's training.json
    if bf16:
        noted["bf16"] = True
    if sd_levels:
        noted["sd_levels"] = sd_levels
        to_own = sd_noise_levels(mean.shape[-1])
    if order_weight:
        noted.update(order_weight=order_weight, order_margin=order_margin)
    if count_weight:
        noted.update(count_weight=count_weight, count_margin=count_margin)
    bar = tqdm(range(start, steps), desc="UNet", initial=start, total=steps, mininterval=30)
    noted_hinges = {name: torch.tensor(float("nan")) for name, *_ in contrasts}  # the last batch's, logged
    cpu_copy = (lambda m: m) if dev.type == "cpu" else (lambda m: copy.deepcopy(m).to("cpu"))  # to export
    for step in bar:
        set_lr(opt, step, steps, warmup=200, floor=0.2, peak=peak_lr)
        idx = torch.randint(len(ids), (batch,), generator=g)
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)) * sf
        dropped = torch.rand(batch, 1, generator=g) < 0.1
        tok = torch.where(dropped, empty, ids[idx])
        t = draw_timesteps(batch, g, sd_levels, to_own if sd_levels else None)
        eps = draw_noise(z0.shape, g, offset_noise)
        a = alphas[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
        w = torch.clamp(snr[t], max=5.0) / snr[t]
        zt, eps, w, tok, t_dev = zt.to(dev), eps.to(dev), w.to(dev), tok.to(dev), t.to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            pred = unet(zt, t_dev, te(tok)[0]).sample
        cell_error = F.mse_loss(pred.float(), eps, reduction="none")
        if object_weight:
            cell_error = cell_error * (1 + object_weight * cover[idx].to(dev))
        loss = (w * cell_error.mean(dim=(1, 2, 3))).mean()
        for name, weight, margin, contrast_hinge, other_ids, changed in contrasts:
            rows = changed[idx] & ~dropped[:, 0]  # captions it changes, not dropped for guidance
            if rows.any():
                other_tok, rows = other_ids[idx][rows].to(dev), rows.to(dev)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    pred_other = unet(zt[rows], t_dev[rows], te(other_tok)[0]).sample
                hinge = contrast_hinge(pred[rows].float(), pred_other.float(), eps[rows], margin)
                loss = loss + weight * hinge
                noted_hinges[name] = hinge.detach()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        ema_update(ema_te, te, decay), ema_update(ema_unet, unet, decay)
        if (step + 1) % 50 == 0:  # .item() waits for the device: only when logging
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            log(out, phase="unet", step=step + 1, loss=loss.item(), lr=opt.param_groups[0]["lr"],
                s_per_step=(time.time() - t0) / (step + 1 - s0),
                **{name: value.item() for name, value in noted_hinges.items()})
        if (step + 1) % 500 == 0 or step + 1 == steps or clock.due():
            save_state(ckpt, te=te.state_dict(), unet=unet.state_dict(), opt=opt.state_dict(),
                       ema_te=ema_te.state_dict(), ema_unet=ema_unet.state_dict(), step=step + 1,
                       loss=loss.item())
            log(out, phase="unet", step=step + 1, loss=loss.item(), checkpoint=str(ckpt))
        if export_to and (step + 1) % export_every == 0 and step + 1 < steps:
            export(vae, cpu_copy(ema_te), tokenizer, cpu_copy(ema_unet), export_to, extra={"unet_steps": step + 1, **noted})
    if export_to:
        export(vae, cpu_copy(ema_te), tokenizer, cpu_copy(ema_unet), export_to,
               extra={"unet_steps": max(start, steps), **noted})
    return ema_te, ema_unet


def widen_from(run: Path, out: Path, channels: int, size: int, factor: int, vocab_size: int, max_length: int) -> None:
    """Start ``out`` from the checkpoints of run folder ``run`` with ``channels`` latent channels
    (:mod:`diffedit_lab.toy.widen`: the wider networks compute what the old ones did). A file
    already in ``out`` is kept (e.g. a ``vae.pt`` fine-tuned by ``toy.vae_ceiling tune``):
    ``vae.pt`` — the old VAE widened, at its step (phase 1 goes on to ``--vae-steps``);
    ``unet.pt`` — the old EMA text encoder and UNet (widened) as weights and EMA, at step 0 with a
    fresh optimiser (phase 2 runs its whole schedule)."""
    from .widen import widen_unet, widen_vae

    for name in ("vae.pt", "unet.pt"):
        if not (run / name).exists():
            raise FileNotFoundError(f"--widen-from {run}: no {name} there; pass a toy.train run folder")
    if not (out / "vae.pt").exists():
        s = torch.load(run / "vae.pt", weights_only=False)
        old = vae_from_state(s["model"], size, factor)
        save_state(out / "vae.pt", model=widen_vae(old, channels).state_dict(), opt=None, step=s["step"],
                   widened_from=str(run / "vae.pt"))
    if not (out / "unet.pt").exists():
        s = torch.load(run / "unet.pt", weights_only=False)
        old = unet_model(size // factor, s["ema_unet"]["conv_in.weight"].shape[1])
        old.load_state_dict(s["ema_unet"])
        unet = widen_unet(old, channels).state_dict()
        te = text_model(vocab_size, max_length)
        te.load_state_dict(s["ema_te"])
        save_state(out / "unet.pt", te=te.state_dict(), unet=unet, opt=None, ema_te=te.state_dict(), ema_unet=unet,
                   step=0, loss=float("nan"), widened_from=f"{run / 'unet.pt'} at step {s['step']}")


def warm_start(folder: Path, tokenizer, max_length: int, text_only: bool = False) -> dict:
    """State dicts from an exported model for a (possibly larger) vocabulary and caption length:
    ``{"vae", "te", "unet"}``. Token embeddings are copied by token string (a token the old
    tokenizer lacks starts at the mean of the old embeddings); position embeddings beyond the
    old length repeat the last one. ``text_only``: the VAE and UNet are None (another geometry:
    their latents would not match)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    old_tok = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    te = CLIPTextModel.from_pretrained(folder / "text_encoder").state_dict()
    emb_key = next(k for k in te if k.endswith("token_embedding.weight"))  # key prefix differs
    pos_key = next(k for k in te if k.endswith("position_embedding.weight"))  # across transformers
    old_emb, old_vocab = te[emb_key], old_tok.get_vocab()
    new_emb = old_emb.mean(0, keepdim=True).repeat(len(tokenizer), 1)
    for token, i in tokenizer.get_vocab().items():
        if token in old_vocab:
            new_emb[i] = old_emb[old_vocab[token]]
    te[emb_key] = new_emb
    pos = te[pos_key]
    if len(pos) < max_length:
        te[pos_key] = torch.cat([pos, pos[-1:].repeat(max_length - len(pos), 1)])
    te = {k: v for k, v in te.items() if not k.endswith("position_ids")}
    if text_only:
        return {"vae": None, "te": te, "unet": None}
    return {
        "vae": AutoencoderKL.from_pretrained(folder / "vae").state_dict(),
        "te": te,
        "unet": UNet2DConditionModel.from_pretrained(folder / "unet").state_dict(),
    }


def export(vae, text_encoder, tokenizer, unet, folder: Path, extra: dict | None = None) -> None:
    """Write a diffusers Stable Diffusion folder atomically (build beside it, then swap)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DDIMScheduler(**scheduler_config(unet.config.sample_size)), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp)
    # keep the slow-tokenizer files too (transformers 5 writes only tokenizer.json), so that
    # older transformers can load the folder
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(Path(tokenizer.name_or_path) / name, tmp / "tokenizer" / name)
    (tmp / "diffedit_lab.json").write_text(json.dumps(DIFFEDIT_DEFAULTS, indent=2) + "\n")
    for name in ("README.md", "diffedit_lab.json"):  # the model card and tuned settings stay
        if (folder / name).exists():
            shutil.copy(folder / name, tmp / name)
    if extra:
        (tmp / "training.json").write_text(json.dumps(extra, indent=2) + "\n")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def init_from(folder: Path, out: Path, vae_steps: int) -> None:
    """Seed the checkpoints in ``out`` from an exported model folder (its EMA weights; the
    optimiser starts afresh), so training can go on where a shipped model left off."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    if (out / "unet.pt").exists():
        return
    te = CLIPTextModel.from_pretrained(folder / "text_encoder").state_dict()
    unet = UNet2DConditionModel.from_pretrained(folder / "unet").state_dict()
    step = json.loads((folder / "training.json").read_text())["unet_steps"]
    vae = AutoencoderKL.from_pretrained(folder / "vae").state_dict()
    save_state(out / "vae.pt", model=vae, opt=None, step=vae_steps, loss=float("nan"))
    save_state(out / "unet.pt", te=te, unet=unet, ema_te=te, ema_unet=unet, opt=None, step=step, loss=float("nan"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/toy"), help="checkpoints and logs")
    p.add_argument("--export", type=Path, default=None, help="model folder to write")
    p.add_argument("--world", choices=("classic", "rich"), default="classic",
                   help="classic: the shipped model's world; rich: the rich world mixed with the classic one")
    p.add_argument("--classic-fraction", type=float, default=0.25, help="share of classic scenes in the rich mix")
    p.add_argument("--image-size", type=int, default=64, help="pixels (rich world)")
    p.add_argument("--vae-factor", type=int, choices=(2, 4, 8), default=4,
                   help="VAE downsampling factor (2: 32×32 latents of a 64-px image, a UNet of four blocks)")
    p.add_argument("--scenes", type=int, default=30_000)
    p.add_argument("--vae-steps", type=int, default=1500)
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--vae-crop", type=int, default=32, help="train the VAE on random crops")
    p.add_argument("--unet-steps", type=int, default=4000)
    p.add_argument("--unet-scenes", type=int, default=16_000, help="scenes encoded for phase 2")
    p.add_argument("--batch", type=int, default=48)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of phase 2")
    p.add_argument("--export-every", type=int, default=500)
    p.add_argument("--ckpt-minutes", type=float, default=10.0, help="save a checkpoint at least this often")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None,
                   help="where the networks train: cpu, cuda, cuda:1, mps (default: DIFFEDIT_DEVICE, else the best "
                        "available); a seed draws the same batches on any device")
    p.add_argument("--quick", action="store_true", help="a few steps on a few scenes (CI)")
    p.add_argument("--resume", action="store_true", help="go on from the checkpoints in --out (error if there are none)")
    p.add_argument("--init-from", type=Path, default=None,
                   help="go on from an exported model folder (e.g. the shipped one) when --out has no checkpoint")
    p.add_argument("--latent-channels", type=int, default=4, help="the VAE's latent channels (the UNet's in and out)")
    p.add_argument("--unet-width", type=int, default=UNET_WIDTH,
                   help="channels of the UNet's first block (deeper blocks: twice as many); a multiple of 32")
    p.add_argument("--object-weight", type=float, default=0.0,
                   help="λ: weigh each latent cell's error by 1 + λ·(share of it the objects cover); 0: plain")
    p.add_argument("--offset-noise", type=float, default=0.0,
                   help="σ: add a per-channel constant σ·N(0, 1) to the training noise (offset noise), so the "
                        "model takes the overall colour from the text, not from z_t's mean; 0: plain")
    p.add_argument("--bf16", action="store_true",
                   help="phase 2's forward pass in bfloat16 mixed precision (torch.autocast on --device; weights, "
                        "optimiser and loss in float32): ≈ 1.5× faster on a CPU with AMX or AVX-512 BF16")
    p.add_argument("--sd-levels", type=float, default=0.0,
                   help="share of each batch (0–1) trained at the noise levels of Stable Diffusion's unshifted "
                        "schedule, on this model's own t (more low-noise steps on 32×32 latents); 0: uniform t")
    p.add_argument("--order-weight", type=float, default=0.0,
                   help="λ of the order loss: the ε-error with a caption naming the objects right to left must "
                        "exceed the true caption's by --order-margin (relative); 0: off")
    p.add_argument("--order-margin", type=float, default=ORDER_MARGIN, help="the order loss's relative margin")
    p.add_argument("--count-weight", type=float, default=0.0,
                   help="λ of the count loss: the ε-error with the caption one object short (its last named left "
                        "out) must exceed the true caption's by --count-margin (relative); 0: off")
    p.add_argument("--count-margin", type=float, default=COUNT_MARGIN, help="the count loss's relative margin")
    p.add_argument("--widen-from", type=Path, default=None,
                   help="start --out from another run's checkpoints widened to --latent-channels (toy.widen)")
    p.add_argument("--warm-start", type=Path, default=None,
                   help="start a new run (rich world) from an exported model's weights, vocabulary remapped "
                        "(another --image-size or --vae-factor: its text encoder only)")
    a = p.parse_args(argv)
    if a.quick:
        a.scenes, a.unet_scenes, a.vae_steps, a.unet_steps, a.batch, a.vae_batch = 64, 64, 3, 3, 4, 4
    if a.unet_width < 32 or a.unet_width % 32 or (a.image_size // a.vae_factor >= HALF_BLOCK_FROM and a.unet_width % 64):
        p.error(f"--unet-width must be a positive multiple of 32 (the group norm's groups; of 64 on latents of "
                f"32×32 or more, whose first block has width/2), got {a.unet_width}")
    if a.unet_width != UNET_WIDTH and (a.warm_start or a.widen_from or a.init_from):
        p.error("--unet-width other than the shipped 64 starts a UNet from scratch: drop --warm-start, "
                "--widen-from and --init-from")
    if not 0 <= a.object_weight < math.inf:
        p.error(f"--object-weight must be a finite number ≥ 0, got {a.object_weight}")
    if not 0 <= a.offset_noise < math.inf:
        p.error(f"--offset-noise must be a finite number ≥ 0, got {a.offset_noise}")
    if not (0 <= a.order_weight < math.inf and 0 < a.order_margin < math.inf):
        p.error(f"--order-weight must be ≥ 0 and --order-margin > 0, both finite; got {a.order_weight}, {a.order_margin}")
    if not (0 <= a.count_weight < math.inf and 0 < a.count_margin < math.inf):
        p.error(f"--count-weight must be ≥ 0 and --count-margin > 0, both finite; got {a.count_weight}, {a.count_margin}")
    if not 0 <= a.sd_levels <= 1:
        p.error(f"--sd-levels must be a share between 0 and 1, got {a.sd_levels}")
    if a.latent_channels < 1:
        p.error(f"--latent-channels must be at least 1, got {a.latent_channels}")
    if a.widen_from and a.warm_start:
        p.error("--widen-from and --warm-start both say where to start: pass one")
    if a.resume and not (a.out / "vae.pt").exists():
        p.error(f"--resume: no checkpoint in {a.out} (vae.pt); start without --resume")
    other_geometry = a.vae_factor != 4 or a.image_size != 64  # latents unlike the shipped model's
    if a.world == "classic" and other_geometry:
        p.error("the classic world is 64 px with a factor-4 VAE; pass --world rich to change them")
    try:
        device = check_device(a.device, "--device") if a.device is not None else default_device()
    except ValueError as e:
        p.error(str(e))
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    rich = a.world == "rich"
    words, max_length = (VOCABULARY, RICH_MAX_LENGTH) if rich else (WORDS, MAX_LENGTH)
    recorded = a.out / "words.json"  # token ids follow the word list: a resumed run must keep it
    if recorded.exists() and json.loads(recorded.read_text()) != list(words):
        p.error(f"{recorded} holds another word list than this world's vocabulary: the checkpoints' "
                "token ids would not match; train into a new --out")
    recorded.write_text(json.dumps(list(words)))
    tokenizer = build_clip_tokenizer(words, a.out / "tokenizer", model_max_length=max_length)
    if a.init_from:
        init_from(a.init_from, a.out, a.vae_steps)
    init = warm_start(a.warm_start, tokenizer, max_length, text_only=other_geometry) if a.warm_start else None
    if a.widen_from:
        widen_from(a.widen_from, a.out, a.latent_channels, a.image_size, a.vae_factor, len(tokenizer), max_length)
    log(a.out, "events.jsonl", phase="start", argv=sys.argv[1:] if argv is None else argv)
    name = f"scenes_{a.scenes}.npz" if not rich else f"scenes_{a.world}_{a.image_size}_{a.scenes}.npz"
    images, captions = dataset(a.scenes, a.seed, a.out / name, a.world, a.classic_fraction, a.image_size)
    vae = train_vae(images, a.out, a.vae_steps, a.vae_batch, a.seed, a.vae_crop, a.image_size, a.vae_factor,
                    init and init["vae"], a.ckpt_minutes, a.latent_channels, device)
    vae.requires_grad_(False)
    latents = cached(a.out / f"latents_{a.unet_scenes}.pt", lambda: encode_all(vae, images[: a.unet_scenes], device))
    captions = captions[: a.unet_scenes]
    cover = None
    if a.object_weight:
        cover = cached(a.out / f"objects_{a.unet_scenes}.pt", lambda: object_coverage(
            a.unet_scenes, a.seed, a.world, a.classic_fraction, a.image_size, a.vae_factor))
    train_unet(vae, tokenizer, latents, captions, a.out, a.unet_steps, a.batch, a.seed + 1,
               a.export_every, a.export, max_length, init, a.ckpt_minutes, a.lr, a.unet_width,
               cover, a.object_weight, a.offset_noise, a.bf16, a.sd_levels, a.order_weight, a.order_margin,
               device, a.count_weight, a.count_margin)
    if a.export:
        print(f"exported to {a.export}")


if __name__ == "__main__":
    main()
