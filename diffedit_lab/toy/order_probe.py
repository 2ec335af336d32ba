"""Does a model read the caption's word order? What it pays when the objects are named in reverse.

    python -m diffedit_lab.toy.order_probe --model runs/f2b/model [--scenes 64] [--threads 2]

A rich-world caption names its objects left to right, so a model that knows the order draws
"a red circle and a blue square" with the circle on the left. On held-out scenes of two or three
distinct objects (``quality.rich_held_out_scenes`` from ``--seed``), noised to

    z_t = √ᾱ_t · z₀ + √(1 − ᾱ_t) · ε

at a few steps ``t`` of the model's own schedule, the probe compares the ε-prediction error with
the true caption ``y`` and with the same objects named right to left ``y′``:

    gain(t) = (E‖ε − ε_θ(z_t, t, y′)‖² − E‖ε − ε_θ(z_t, t, y)‖²) / E‖ε − ε_θ(z_t, t, y)‖²

and the share of scenes whose error ``y′`` raises. A model that reads the caption as a bag of
objects — right shapes and colours, placed in any order — has gain 0 and a share near ½ at
every ``t``; the shipped model pays 20–60 %. It takes seconds, so a training run can be watched
with it between the slower text→image reads (model card, ``runs/f2b``).

``--caption short`` asks the same of a caption one object *short* (the last named left out,
:func:`~diffedit_lab.toy.world.short_caption`): does the model mind a caption that leaves out an
object it can see? (A removal needs it to: otherwise the hole gets another of the caption's
objects; ``toy.train --count-weight``.)

    python -m diffedit_lab.toy.order_probe --model DIR --caption short
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from .quality import HELD_OUT_SEED, rich_held_out_scenes
from .world import Scene, reverse_caption, short_caption

TIMESTEPS = (100, 300, 500, 700, 850, 950)


def reversed_caption(scene: Scene) -> str:
    """``scene``'s caption with its objects named right to left (background and time unchanged)."""
    return reverse_caption(scene.caption)


def shortened_caption(scene: Scene) -> str:
    """``scene``'s caption with its last-named (rightmost) object left out."""
    return short_caption(scene.caption)


CAPTIONS = {"reversed": reversed_caption, "short": shortened_caption}
"""The contrasting captions the probe can compare with the true one, by ``--caption`` name."""


def probe_scenes(n: int, seed: int = HELD_OUT_SEED, size: int = 64) -> list[Scene]:
    """The first ``n`` held-out rich scenes of two or three objects with different names (a scene
    whose objects share a name reads the same in both orders)."""
    found, k = [], 0
    while len(found) < n:
        batch = rich_held_out_scenes(3 * n, seed + k, size)
        found += [s for s in batch if len(s.objects) > 1 and len({o.name for o in s.objects}) == len(s.objects)]
        k += 3 * n
    return found[:n]


@torch.inference_mode()
def order_gain(c, scenes: list[Scene], timesteps=TIMESTEPS, seed: int = 0,
               contrast=reversed_caption) -> dict[int, dict[str, float]]:
    """Per step ``t``: ``gain`` (the relative rise of the ε-error when the caption names the objects
    in reverse — or is ``contrast(scene)``, e.g. :func:`shortened_caption`) and ``share`` (of scenes
    whose error rises); one ε per ``t`` from a CPU generator seeded ``seed``, the same for both captions."""
    from ..latents import encode, encode_prompt

    x = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 127.5 - 1
    z0 = encode(c, x.to(c.device))
    y = torch.cat([encode_prompt(c, s.caption) for s in scenes])
    y_rev = torch.cat([encode_prompt(c, contrast(s)) for s in scenes])
    alpha_bar = c.scheduler.alphas_cumprod
    g = torch.Generator().manual_seed(seed)
    out = {}
    for t in timesteps:
        eps = torch.randn(z0.shape, generator=g).to(z0)
        a = alpha_bar[t].to(z0)
        z_t = a.sqrt() * z0 + (1 - a).sqrt() * eps
        steps = torch.full((len(scenes),), t, device=c.device)
        err = ((c.unet(z_t, steps, y).sample.float() - eps) ** 2).mean(dim=(1, 2, 3))
        err_rev = ((c.unet(z_t, steps, y_rev).sample.float() - eps) ** 2).mean(dim=(1, 2, 3))
        out[t] = dict(gain=float((err_rev.mean() - err.mean()) / err.mean()), share=float((err_rev > err).float().mean()))
    return out


def main(argv: list[str] | None = None) -> None:
    from ..inputs import model_side
    from ..models import load_components

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the built-in model)")
    p.add_argument("--scenes", type=int, default=64, help="held-out scenes of two or three objects")
    p.add_argument("--seed", type=int, default=HELD_OUT_SEED + 7000, help="first held-out seed")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--caption", choices=tuple(CAPTIONS), default="reversed",
                   help="the caption compared with the true one: its objects named in reverse, or one object short")
    a = p.parse_args(argv)
    if a.scenes < 1:
        p.error(f"--scenes must be at least 1, got {a.scenes}")
    if a.threads:
        torch.set_num_threads(a.threads)
    c = load_components(a.model) if a.model else load_components()
    gains = order_gain(c, probe_scenes(a.scenes, a.seed, model_side(c)), contrast=CAPTIONS[a.caption])
    what = "the objects named in reverse" if a.caption == "reversed" else "the caption one object short"
    print(f"{a.model or 'built-in model'}: error rise with {what} (scenes where it rises)")
    print("  " + " | ".join(f"t {t}: {r['gain']:+.1%} ({r['share']:.0%})" for t, r in gains.items()))


if __name__ == "__main__":
    main()
