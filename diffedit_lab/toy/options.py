"""Measure the rich world's model options before training one: the VAE's round-trip PSNR (the
ceiling of every edit's background) and the seconds per DiffEdit edit of each geometry.

    python -m diffedit_lab.toy.options vae  --out runs/options [--steps 200]
    python -m diffedit_lab.toy.options time [--repeats 3]

``vae``: the shipped VAE (64 px, factor 4) as it is, the same fine-tuned for ``--steps`` steps
on the rich+classic mix, and fresh VAEs of each geometry trained for the same steps, each
scored on 64 held-out rich scenes (seeds from 987 654 321) and 64 classic ones:
``PSNR = 10·log10(4 / MSE)`` on pixels in [−1, 1], encoding with the posterior mean.
``time``: a randomly initialised model of each geometry (the UNet, text encoder and VAE
shapes that would be trained), timed on whole edits with ``diffedit_lab.edit`` at the shipped
model's recorded settings — the time depends on the shapes, not on the weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from . import train
from .world import make_scene

# (image px, VAE factor): 16² latents as today; 16² latents for richer pixels; 12²; 32² (two ways: finer
# cells of the same image, or twice the pixels); train.unet_model gives 32² latents a fourth block
GEOMETRIES = ((64, 4), (128, 8), (96, 8), (64, 2), (128, 4))
HELD_OUT = 987_654_321


def held_out_images(world: str, size: int, n: int = 64) -> np.ndarray:
    imgs = []
    for i in range(n):
        s = make_scene(HELD_OUT + i, world, size) if world == "rich" else make_scene(HELD_OUT + i)
        img = s.image
        if img.shape[0] != size:
            from PIL import Image

            img = np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC))
        imgs.append(img)
    return np.stack(imgs)


def measure_vae(out: Path, steps: int, scenes: int = 4000) -> list[dict]:
    rows = []
    shipped = train.warm_start(train.PACKAGE_MODEL, train.build_clip_tokenizer(["a"], out / "tok"), 16)["vae"]

    def score(vae, size, name, t):
        vae.eval()
        row = dict(option=name, size=size, rich_psnr=round(train.round_trip_psnr(vae, held_out_images("rich", size)), 2),
                   classic_psnr=round(train.round_trip_psnr(vae, held_out_images("classic", size)), 2),
                   train_s=round(t, 1))
        print(json.dumps(row), flush=True)
        rows.append(row)

    vae = train.vae_model(64, 4)
    vae.load_state_dict(shipped)
    score(vae, 64, "shipped VAE (64 px, f4), no fine-tuning", 0)
    for size, factor, init in ((64, 4, shipped), (64, 4, None), (128, 8, None)):
        d = out / f"vae_{size}_f{factor}_{'warm' if init else 'fresh'}"
        d.mkdir(parents=True, exist_ok=True)
        images, _ = train.dataset(scenes, 0, d / "scenes.npz", "rich", 0.25, size)
        t = time.time()
        vae = train.train_vae(images, d, steps, 16, 0, crop=size // 2, size=size, factor=factor, init=init)
        name = f"{size} px, f{factor}, {'shipped VAE fine-tuned' if init else 'fresh'} {steps} steps (batch 16, crops {size // 2})"
        score(vae, size, name, time.time() - t)
    return rows


def measure_time(repeats: int, folder: Path) -> list[dict]:
    import diffedit_lab as dl
    from PIL import Image

    from .tokenizer import build_clip_tokenizer
    from .world import VOCABULARY, make_edit

    rows = []
    for size, factor in GEOMETRIES:
        d = folder / f"time_{size}_f{factor}"
        tok = build_clip_tokenizer(VOCABULARY, d / "tok", model_max_length=train.RICH_MAX_LENGTH)
        torch.manual_seed(0)
        vae = train.vae_model(size, factor)
        te = train.text_model(len(tok), train.RICH_MAX_LENGTH)
        unet = train.unet_model(size // factor)
        train.export(vae, te, tok, unet, d / "model")
        (d / "model" / "diffedit_lab.json").write_text((train.PACKAGE_MODEL / "diffedit_lab.json").read_text())
        c = dl.load_components(d / "model")
        times = []
        for i in range(repeats + 1):
            e = make_edit(HELD_OUT + i, "colour", "rich", size)
            t = time.perf_counter()
            dl.edit(c, Image.fromarray(e.scene.image), e.source, e.target, seed=i, progress=False)
            if i:
                times.append(time.perf_counter() - t)
        row = dict(size=size, factor=factor, latents=size // factor, s_per_edit=round(statistics.median(times), 2),
                   threads=torch.get_num_threads(), settings=c.defaults)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("vae", "time"))
    p.add_argument("--out", type=Path, default=Path("runs/options"))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    rows = measure_vae(a.out, a.steps) if a.what == "vae" else measure_time(a.repeats, a.out)
    (a.out / f"{a.what}.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
