"""The VAE's ceiling on the rich world, object by object — and an object-weighted fine-tune.

    python -m diffedit_lab.toy.vae_ceiling probe --vae runs/world13/vae.pt [--scenes 96] [--truth]
    python -m diffedit_lab.toy.vae_ceiling tune --vae runs/world13/vae.pt --out runs/vae13b --steps 1000 --lam 10

``probe``: held-out rich scenes (``quality.rich_held_out_scenes``: seeds from 987 654 321,
1 + i mod 3 objects) go through encode (posterior mean) → decode; the pixel checker
(:mod:`diffedit_lab.toy.rich_checker`) reads each result. Reported: per object, whether it is
found at its place with its shape, colour and size (``find_object``), by size × background
(plain / textured) and what the misses were read as; per scene, "everything right" (the
objects in order, the background and time of day — quality's ``t2i_ok``) by object count;
the PSNR ``10·log10(4 / MSE)`` over object pixels and over background pixels; and the classic
round-trip PSNR. ``--truth`` reads the true images (the checker's own ceiling).
``--small R0 R1``: a local variant of the world whose "small" radii are drawn from [R0, R1]
(``world.SIZE_RANGE`` and the checker's threshold patched in this process only).

``tune``: fine-tune a VAE checkpoint with the object-weighted L1

    L = Σ w·|x − D(z)| / Σ w + β·KL  [+ μ · the same on finite differences ∂x],
    w = 1 + λ·dilate(M, d),   z ~ q(z|x)

where ``M`` is the union of the true object masks, on training scenes
``train.training_scene(i, 0, "rich", 0.25)`` (the same classic mix as the run), random crops.
The checkpoint written (``vae.pt``) has train.py's format; its ``step`` is the source's plus
the new steps, so ``train.py --vae-steps <that step>`` takes it as finished.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import rich_checker, train, world


def load_vae(path: Path):
    """A VAE (train.py's 64 px, any factor) from a train.py checkpoint (``vae.pt``) or a model
    folder (its ``vae`` subfolder)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such VAE checkpoint; pass a train.py vae.pt or a model folder")
    if path.is_dir():
        from diffusers import AutoencoderKL

        return AutoencoderKL.from_pretrained(path / "vae" if (path / "vae").exists() else path).eval()
    return train.vae_from_state(torch.load(path, weights_only=False)["model"]).eval()


@torch.no_grad()
def round_trip(vae, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """uint8 ``decode(mean of encode(x))`` of (N, H, W, 3) uint8 images."""
    out = []
    for k in range(0, len(images), batch):
        x = train.to_tensor(images[k:k + batch])
        y = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
        out.append(np.round((y.permute(0, 2, 3, 1).numpy() + 1) * 127.5).astype(np.uint8))
    return np.concatenate(out)


def region_psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """PSNR (dB, pixels in [−1, 1]) of ``b`` against ``a`` over the pixels where ``region``."""
    d = (a.astype(np.float64) - b.astype(np.float64)) / 127.5
    mse = float((d[region] ** 2).mean())
    return float(10 * np.log10(4 / max(mse, 1e-10)))


def scene_objects(scene) -> list[dict]:
    """Per object of a scene: size, background class, and its true mask."""
    bg = "plain" if scene.background == "plain" else "textured"
    return [dict(size=o.size, bg=bg, obj=o, mask=m) for o, m in zip(scene.objects, scene.masks)]


def read_objects(image: np.ndarray, scene) -> tuple[list[dict], bool]:
    """Per true object: was it found (shape, colour, size, place), and what the detection
    nearest its centre was read as; plus the scene verdict (objects in order, background, night)."""
    reading = rich_checker.read(image)
    verdict = rich_checker.judge(reading, scene.caption)
    rows, used = [], set()
    for r in scene_objects(scene):
        j = rich_checker.find_object(reading.objects, r["obj"], r["mask"], used)
        ok = j is not None
        if ok:
            used.add(j)
        ys, xs = np.nonzero(r["mask"])
        near = min(reading.objects, key=lambda d: np.hypot(d.cx - xs.mean(), d.cy - ys.mean()), default=None)
        rows.append(dict(size=r["size"], bg=r["bg"], ok=ok, truth=r["obj"].name,
                         read="" if ok else (near.name if near is not None else "nothing")))
    return rows, bool(verdict.order_ok and verdict.background_ok and verdict.night_ok)


def probe(images: np.ndarray, scenes: list, classic_psnr: float | None = None) -> dict:
    """The probe's numbers for ``images`` (the round-trips, or the true images) of ``scenes``."""
    by, by_name, misses, scene_ok = defaultdict(list), defaultdict(list), defaultdict(int), defaultdict(list)
    obj_psnr, bg_psnr = [], []
    for img, s in zip(images, scenes):
        rows, ok = read_objects(img, s)
        scene_ok[len(s.objects)].append(ok)
        for r in rows:
            by[f"{r['size']}/{r['bg']}"].append(r["ok"])
            by_name[f"{r['size']}/{s.background}"].append(r["ok"])
            if not r["ok"]:
                misses[f"{r['truth']} -> {r['read']}"] += 1
        fg = ~s.background_mask
        obj_psnr.append(region_psnr(s.image, img, fg))
        bg_psnr.append(region_psnr(s.image, img, ~fg))
    out = dict(
        objects={k: f"{sum(v)}/{len(v)}" for k, v in sorted(by.items())},
        objects_rate={k: round(float(np.mean(v)), 3) for k, v in sorted(by.items())},
        objects_by_background={k: f"{sum(v)}/{len(v)}" for k, v in sorted(by_name.items())},
        scenes_ok={str(k): f"{sum(v)}/{len(v)}" for k, v in sorted(scene_ok.items())},
        scenes_ok_rate={str(k): round(float(np.mean(v)), 3) for k, v in sorted(scene_ok.items())},
        object_psnr=round(float(np.mean(obj_psnr)), 2), background_psnr=round(float(np.mean(bg_psnr)), 2),
        misses=dict(sorted(misses.items(), key=lambda t: -t[1])[:12]),
    )
    if classic_psnr is not None:
        out["classic_psnr"] = round(classic_psnr, 2)
    return out


def set_small_range(lo: float, hi: float) -> None:
    """A local variant of the world (this process only): "small" radii from [lo, hi], and the
    checker's small/big threshold moved to the middle between the ranges."""
    world.SIZE_RANGE["small"] = (lo, hi)
    rich_checker.SMALL_MAX = 0.5 * (hi + world.SIZE_RANGE["big"][0])


def run_probe(vae_path: Path | None, n: int, truth: bool = False) -> dict:
    from .options import held_out_images
    from .quality import rich_held_out_scenes

    scenes = rich_held_out_scenes(n)
    truth_images = np.stack([s.image for s in scenes])
    if truth:
        return probe(truth_images, scenes)
    vae = load_vae(vae_path)
    t = time.time()
    recon = round_trip(vae, truth_images)
    classic = train.round_trip_psnr(vae, held_out_images("classic", 64))
    out = probe(recon, scenes, classic)
    out["seconds"] = round(time.time() - t, 1)
    return out


# --------------------------------------------------------------------------- fine-tuning


def dilate(mask: torch.Tensor, px: int) -> torch.Tensor:
    """Binary dilation of (B, 1, H, W) masks by a (2·px+1)² square."""
    return F.max_pool2d(mask, 2 * px + 1, stride=1, padding=px) if px > 0 else mask


def weighted_l1(recon: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``Σ w·|x − x̂| / Σ w`` (over channels too): the L1 with object pixels weighted."""
    w = weight.expand_as(x)
    return (w * (recon - x).abs()).sum() / w.sum()


def edge_l1(recon: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The weighted L1 of the horizontal and vertical differences ``∂x`` (edges and corners):
    ``½ Σ_{∂ ∈ {∂h, ∂v}} Σ w·|∂x − ∂x̂| / Σ w``."""
    dh = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dv = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return 0.5 * (weighted_l1(dh(recon), dh(x), weight[..., :, 1:]) + weighted_l1(dv(recon), dv(x), weight[..., 1:, :]))


def training_set(n: int, seed: int = 0, classic_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 64, 64, 3) uint8 and object masks (N, 64, 64) bool of training scenes
    ``train.training_scene(i, seed, "rich", classic_fraction)``, i < n."""
    imgs, masks = [], []
    for i in range(n):
        s = train.training_scene(i, seed, "rich", classic_fraction)
        imgs.append(s.image)
        masks.append(~s.background_mask)
    return np.stack(imgs), np.stack(masks)


def crops(x: torch.Tensor, m: torch.Tensor, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random ``size``² crop of each image and its mask."""
    if size >= x.shape[-1]:
        return x, m
    ii, jj = torch.randint(0, x.shape[-1] - size + 1, (2, len(x)), generator=g).tolist()
    return (torch.stack([im[:, a:a + size, b:b + size] for im, a, b in zip(x, ii, jj)]),
            torch.stack([mm[:, a:a + size, b:b + size] for mm, a, b in zip(m, ii, jj)]))


def tune(src: Path, out: Path, steps: int, lam: float, *, scenes: int = 3000, batch: int = 16, crop: int = 32,
         dilation: int = 1, peak: float = 3e-4, seed: int = 0, edge: float = 0.0, decoder_only: bool = False,
         log_every: int = 50, channels: int | None = None):
    """Fine-tune the VAE checkpoint ``src`` with the object-weighted L1 (module docstring);
    plus ``edge`` times :func:`edge_l1` with the same weights; writes ``out/vae.pt`` (train.py's
    format) and returns the VAE with its scaling factor set. ``decoder_only``: the encoder (and
    ``quant_conv``) stay frozen, so the latents — and a UNet trained on them — stay valid.
    ``channels``: first widen the VAE to that many latent channels (:func:`toy.widen.widen_vae`)."""
    if steps < 1 or lam < 0:
        raise ValueError(f"steps must be ≥ 1 and lam ≥ 0 (got {steps}, {lam})")
    state = torch.load(src, weights_only=False)
    vae = train.vae_from_state(state["model"])
    if channels is not None and channels != vae.config.latent_channels:
        from .widen import widen_vae

        vae = widen_vae(vae, channels)
    vae.train()
    if decoder_only:
        vae.encoder.requires_grad_(False), vae.quant_conv.requires_grad_(False)
        vae.encoder.eval()
    opt = torch.optim.AdamW([q for q in vae.parameters() if q.requires_grad], lr=peak, weight_decay=0.0)
    images, masks = training_set(scenes, seed)
    g = torch.Generator().manual_seed(seed + 13)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for step in range(steps):
        train.set_lr(opt, step, steps, warmup=50, floor=0.1, peak=peak)
        idx = torch.randint(len(images), (batch,), generator=g).numpy()
        x = train.to_tensor(images[idx])
        m = dilate(torch.from_numpy(masks[idx]).float()[:, None], dilation)
        x, m = crops(x, m, crop, g)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(g)).sample
        w = 1 + lam * m
        loss = weighted_l1(recon, x, w) + 1e-6 * posterior.kl().mean()
        if edge:
            loss = loss + edge * edge_l1(recon, x, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            train.log(out, "tune.jsonl", step=step + 1, loss=loss.item(), s_per_step=(time.time() - t0) / (step + 1))
        if (step + 1) % 200 == 0 or step + 1 == steps:
            train.save_state(out / "vae.pt", model=vae.state_dict(), opt=None if decoder_only else opt.state_dict(),
                             step=int(state["step"]) + step + 1, loss=loss.item(), tuned_from=str(src),
                             tuned_steps=step + 1, lam=lam, dilation=dilation, edge=edge,
                             decoder_only=decoder_only)
    vae.eval()
    with torch.no_grad():
        z = vae.encode(train.to_tensor(images[:512])).latent_dist.sample(g)
    vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    return vae


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("probe", "tune"))
    p.add_argument("--vae", type=Path, help="train.py vae.pt (or a model folder, probe only)")
    p.add_argument("--scenes", type=int, default=96, help="probe: held-out scenes; tune: training scenes")
    p.add_argument("--truth", action="store_true", help="probe the true images (the checker itself)")
    p.add_argument("--small", type=float, nargs=2, default=None, metavar=("R0", "R1"),
                   help="local world variant: small radii in [R0, R1]")
    p.add_argument("--out", type=Path, default=Path("runs/vae13b"))
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lam", type=float, default=10.0)
    p.add_argument("--dilation", type=int, default=1)
    p.add_argument("--decoder-only", action="store_true", help="tune the decoder only (latents unchanged)")
    p.add_argument("--edge", type=float, default=0.0, help="weight of the edge (finite-difference) L1")
    p.add_argument("--channels", type=int, default=None, help="tune: widen to this many latent channels first (toy.widen)")
    p.add_argument("--json", type=Path, default=None, help="append the probe's result here")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.what == "probe" and not a.truth and a.vae is None:
        p.error("probe needs --vae PATH (or --truth)")
    if a.what == "tune" and a.vae is None:
        p.error("tune needs --vae PATH (a train.py vae.pt to start from)")
    if a.small:
        set_small_range(*a.small)
    if a.what == "probe":
        res = dict(vae=str(a.vae) if not a.truth else "truth", scenes=a.scenes, small_range=list(world.SIZE_RANGE["small"]),
                   **run_probe(a.vae, a.scenes, a.truth))
        print(json.dumps(res), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(res) + "\n")
    else:
        tune(a.vae, a.out, a.steps, a.lam, scenes=a.scenes, dilation=a.dilation, edge=a.edge, decoder_only=a.decoder_only,
             channels=a.channels)
        print(f"wrote {a.out / 'vae.pt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
