"""Checkers for the exercise notebooks: the student's function in, a verdict and a hint out.

Each ``check_*`` runs the student's function on random tensors and on the embedded toy model,
compares it with the library's own function (never a second copy of the formula), and

* on success prints one line saying what was verified and returns ``None``;
* on failure raises :class:`AssertionError` naming the most likely mistake, with a hint.

Mistakes are told apart by feeding the same inputs to *models of the mistakes* — the library's
functions called the wrong way (ᾱ of the other level, a batch-wide mean, one draw, no guidance,
the source text, the noisier encoded latent…) — and seeing which one the answer matches.

==========================  ==============================================================
checker                     the student's function
==========================  ==============================================================
``check_difference``        ``fn(source_noise, target_noise) -> D``: (B, n, C, h, w) → (B, h, w)
``check_normalize``         ``fn(D, clamp_ratio) -> D̃``: (B, h, w) → (B, h, w), per image
``check_inverse_step``      ``fn(z, eps, alpha_bar_s, alpha_bar_t) -> z_t`` (DDIM, to the noisier t)
``check_denoise_step``      ``fn(z, eps, alpha_bar_t, alpha_bar_prev) -> z_prev`` (DDIM, η = 0)
``check_ddim_invert``       ``fn(c, z0, steps, strength) -> trajectory`` (T + 1, B, C, h, w)
``check_masked_denoise``    ``fn(c, inversion, mask, prompt, guidance) -> latents`` (B, C, h, w)
``check_edit``              ``fn(c, image, source, target, *, steps, seed) -> (mask, latents)``
==========================  ==============================================================

ᾱ may be given to the steps as a float or a 0-dim tensor; answers may be any float dtype.
:func:`noise_levels` gives the ᾱ of every latent of an :class:`~diffedit_lab.inversion.Inversion`.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Callable

import torch

from . import sampling
from .denoise import as_latent_mask, masked_denoise
from .inversion import Inversion, ddim_invert
from .latents import encode, encode_prompt
from .mask import noise_diff_mask, noise_difference, normalize_and_threshold
from .models import Components, fresh_schedulers, load_components

RTOL, ATOL = 1e-4, 1e-5  # float32 rounding of a correct answer written another way stays far below


class _Mistake(AssertionError):
    pass


def _fail(mistake: str, hint: str):
    raise _Mistake(f"{mistake}\nHint: {hint}")


def _ok(what: str) -> None:
    print(f"✓ {what}")


# --------------------------------------------------------------------------- helpers

@functools.lru_cache(maxsize=None)
def _embedded() -> Components:
    return load_components(device="cpu")


def _components(c: Components | None) -> Components:
    return _embedded() if c is None else c


def _per_model(build):
    """Cache ``build(c)`` per Components object (they are not hashable)."""
    cache: dict = {}

    @functools.wraps(build)
    def cached(c: Components):
        if id(c) not in cache or cache[id(c)][0] is not c:
            cache[id(c)] = (c, build(c))
        return cache[id(c)][1]

    return cached


def schedule(c: Components, steps: int, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoding's ``timesteps`` (T,), cleanest first, and the ``ᾱ`` of its T + 1 latents
    (:func:`noise_levels`): what a hand-written encoding or decoding loop needs."""
    from .sampling import inversion_timesteps

    timesteps = inversion_timesteps(fresh_schedulers(c)[1], steps, strength).cpu()
    probe = Inversion(trajectory=torch.empty(0), timesteps=timesteps, steps=steps, strength=strength,
                      prompt_embeds=torch.empty(0), guidance=1.0)
    return timesteps, noise_levels(c, probe)


def noise_levels(c: Components, inversion: Inversion) -> torch.Tensor:
    """``ᾱ`` of every latent of ``inversion.trajectory``, (T + 1,) float32: ``levels[k]`` is the
    noise level of ``trajectory[k]`` — ``ᾱ`` of ``timesteps[k − 1]`` for ``k ≥ 1``, and for the
    clean ``z0`` the level just before the first timestep (``ᾱ_0`` when that is below 0, as the
    schedulers with ``set_alpha_to_one=False``).

    An inverse step from ``trajectory[k]`` to ``trajectory[k + 1]`` goes from ``levels[k]`` to
    ``levels[k + 1]``; the denoising loop walks the same levels backwards."""
    scheduler, _ = fresh_schedulers(c)
    alphas = scheduler.alphas_cumprod.float()
    ts = [int(t) for t in inversion.timesteps]
    first = ts[0] - scheduler.config.num_train_timesteps // inversion.steps
    start = alphas[first] if first >= 0 else (torch.tensor(1.0) if scheduler.config.set_alpha_to_one else alphas[0])
    return torch.stack([start, *(alphas[t] for t in ts)])


def _tensor(out, name: str) -> torch.Tensor:
    if out is None:
        _fail(f"`{name}` returned None.", "end your function with `return ...` of the result.")
    if not isinstance(out, torch.Tensor):
        try:
            out = torch.as_tensor(out)
        except Exception:
            _fail(f"`{name}` returned a {type(out).__name__}, not a tensor.", "return a torch.Tensor.")
    if not out.is_floating_point():
        _fail(f"`{name}` returned a tensor of dtype {out.dtype}.", "return floats (no rounding or casting to int/bool).")
    return out.detach().cpu().double()


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = RTOL, atol: float = ATOL) -> bool:
    b = b.detach().cpu().double()
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def _call(fn: Callable, name: str, *args, **kwargs):
    """``fn(*args, **kwargs)`` on clones (an in-place edit must not change our references)."""
    args = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 - any error of the student's code becomes a hint
        _fail(f"`{name}` raised {type(e).__name__}: {e}",
              "run it on small tensors in a cell of its own and read the traceback; ᾱ may come as a float "
              "or a 0-dim tensor — `** 0.5` works on both (torch.sqrt needs a tensor, math.sqrt a number).")


def _shape(out: torch.Tensor, expected: tuple, name: str, extra: dict | None = None):
    if tuple(out.shape) == tuple(expected):
        return
    for shape, (mistake, hint) in (extra or {}).items():
        if tuple(out.shape) == tuple(shape):
            _fail(mistake, hint)
    _fail(f"`{name}` returned shape {tuple(out.shape)}, expected {tuple(expected)}.",
          "check which dimensions you average over (`dim=`) and that you do not drop the batch dimension.")


def _diagnose(out: torch.Tensor, ref: torch.Tensor, candidates, name: str, what: str):
    """Pass if ``out`` equals ``ref``; else fail with the first candidate mistake it equals."""
    if _close(out, ref):
        return
    for wrong, mistake, hint in candidates:
        try:  # a model of a mistake may call the library outside what it accepts: then it is not this one
            candidate = wrong() if callable(wrong) else wrong
        except (ValueError, TypeError):
            continue
        if _close(out, candidate):
            _fail(mistake, hint)
    err = (out - ref.detach().cpu().double()).abs().max().item()
    _fail(f"`{name}` differs from the library's {what} (largest difference {err:.3g}); none of the usual "
          "mistakes explains it.", "compare your code with the equation line by line, on the smallest input.")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- the mask

@_per_model
def _model_mask(c: Components):
    """A MaskResult of the embedded model on a toy colour edit (3 draws), for the model checks."""
    from .toy.world import make_edit

    ex = make_edit(0, "colour")
    z0 = encode(c, ex.scene.image)
    return noise_diff_mask(c, z0, ex.source, ex.target, n=3, mask_noise=0.5, guidance=3.0, seed=0, progress=False)


def check_difference(fn: Callable, *, c: Components | None = None) -> None:
    """``fn(source_noise, target_noise) -> D``: (B, n, C, h, w) twice → (B, h, w),
    ``D = (1/n) Σ_i mean_c |ε̂(Q) − ε̂(R)|`` (library: :func:`~diffedit_lab.mask.noise_difference`)."""
    name = "your difference"
    g = _gen(0)
    B, n, C, h, w = 3, 5, 4, 6, 7
    source = torch.randn(B, n, C, h, w, generator=g)
    target = source + torch.randn(B, n, C, h, w, generator=g) * torch.tensor([0.5, 1.0, 2.0]).view(B, 1, 1, 1, 1)
    out = _tensor(_call(fn, name, source, target), name)
    delta = target - source
    _shape(out, (B, h, w), name, {
        (B, n, h, w): ("You averaged over the channels but not over the draws (shape (B, n, h, w)).",
                       "D averages the n draws too: take the mean over dimensions 1 and 2."),
        (B, C, h, w): ("You averaged over the draws but not over the channels (shape (B, C, h, w)).",
                       "D averages the C latent channels too: take the mean over dimensions 1 and 2."),
    })
    sign = "use `.abs()` on the difference of the two predictions before averaging: opposite signs must not cancel."
    _diagnose(out, noise_difference(source, target), [
        (delta.mean([1, 2]), "Signed instead of absolute difference.", sign),
        (-delta.mean([1, 2]), "Signed instead of absolute difference (and source − target).", sign),
        (delta.mean([1, 2]).abs(), "The absolute value is taken after averaging.", sign),
        (delta.mean(1).abs().mean(1), "The absolute value is taken after averaging the draws.", sign),
        (delta.mean(2).abs().mean(1), "The absolute value is taken after averaging the channels.", sign),
        (delta.pow(2).mean([1, 2]), "Squared instead of absolute difference.", "DiffEdit uses |ε̂(Q) − ε̂(R)|, not its square."),
        (delta[:, 0].abs().mean(1), "Only one draw used (the first).",
         "average over all n draws (dimension 1), not just `[:, 0]`."),
        (delta[:, -1].abs().mean(1), "Only one draw used (the last).",
         "average over all n draws (dimension 1); a loop over draws must accumulate, not overwrite."),
        (delta.abs().sum([1, 2]), "Summed instead of averaged.", "use `.mean(...)`, not `.sum(...)`."),
        (delta.abs().sum(1).mean(1), "Summed over the draws instead of averaged.", "divide by n (use `.mean`)."),
        (delta.abs().sum(2).mean(1), "Summed over the channels instead of averaged.", "divide by C (use `.mean`)."),
    ], name, "noise_difference")
    r = _model_mask(_components(c))
    out = _tensor(_call(fn, name, r.source_noise, r.target_noise), name)
    _shape(out, tuple(r.difference.shape), name)
    if not _close(out, r.difference):
        _fail("Right on random tensors but not on the model's predictions.",
              "do not assume sizes: use the shapes of the inputs (B, n, C, h, w).")
    _ok(f"difference map D = mean over draws and channels of |ε̂(Q) − ε̂(R)|: matches the library on random "
        f"tensors {(B, n, C, h, w)} and on the embedded model's {r.n} draws.")


def check_normalize(fn: Callable, *, c: Components | None = None) -> None:
    """``fn(D, clamp_ratio) -> D̃``: (B, h, w) → (B, h, w), ``D̃ = min(D, κ·mean(D)) / (κ·mean(D))``
    with the mean **per image** (library: :func:`~diffedit_lab.mask.normalize_and_threshold`)."""
    name = "your normalisation"
    g = _gen(1)
    B, h, w = 3, 6, 7
    D = torch.rand(B, h, w, generator=g).pow(3) * torch.tensor([0.1, 1.0, 10.0]).view(B, 1, 1)
    D[:, 2, 3] *= 40  # one spike per image: the clamp matters
    for kappa in (3.0, 1.5):
        out = _tensor(_call(fn, name, D, kappa), name)
        _shape(out, (B, h, w), name)
        mean_img, mean_all = D.flatten(1).mean(1).view(-1, 1, 1), D.mean()
        clamp_hint = "clamp first: `torch.minimum(D, bound)` (or `D.clamp(max=bound)`) with bound = κ·mean(D), then divide by bound."
        _diagnose(out, normalize_and_threshold(D, kappa, 0.5)[0], [
            (normalize_and_threshold(D.flatten()[None], kappa, 0.5)[0].view(B, h, w),
             "Batch-wide instead of per-image normalisation: mean(D) was taken over the whole batch.",
             "take the mean of each image: `D.mean(dim=(1, 2), keepdim=True)` (diffusers' bug: one image changes "
             "another's mask)."),
            (D / (kappa * mean_img), "Missing clamp: values above κ·mean(D) stay above 1.", clamp_hint),
            (D / (kappa * mean_all), "Missing clamp, and the mean is batch-wide.",
             clamp_hint + " Take the mean per image: `D.mean(dim=(1, 2), keepdim=True)`."),
            (torch.minimum(D, kappa * mean_img), "Clamped but not rescaled to [0, 1].", "divide by κ·mean(D) after the clamp."),
            (torch.minimum(D, torch.tensor(kappa)) / kappa, "Clamped at κ instead of κ·mean(D).",
             "the bound is κ times the image's mean difference."),
            (D / D.flatten(1).amax(1).view(-1, 1, 1), "Rescaled by the maximum instead of clamping at κ·mean(D).",
             "one extreme cell would squash the rest: " + clamp_hint),
            ((D - D.flatten(1).amin(1).view(-1, 1, 1)) / (D.flatten(1).amax(1) - D.flatten(1).amin(1)).view(-1, 1, 1),
             "Min–max rescaling instead of clamping at κ·mean(D).", clamp_hint),
            (normalize_and_threshold(D, 3.0, 0.5)[0], "`clamp_ratio` ignored: you used κ = 3 whatever was passed.",
             "use the argument `clamp_ratio`, not a constant."),
        ], name, f"normalize_and_threshold (κ = {kappa})")
    r = _model_mask(_components(c))
    out = _tensor(_call(fn, name, r.difference, r.clamp_ratio), name)
    if not _close(out, r.normalized):
        _fail("Right on random maps but not on the model's D.", "do not assume sizes or a batch of one.")
    _ok("normalised map D̃ = min(D, κ·mean(D)) / (κ·mean(D)), mean per image: matches the library for κ = 3 and "
        "1.5 on random maps and on the embedded model's D.")


# --------------------------------------------------------------------------- the steps

def _step_inputs(seed: int):
    g = _gen(seed)
    return torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)


def _alpha_forms(a: float, b: float):
    """ᾱ pairs as floats, 0-dim float32 and 0-dim float64 tensors."""
    return [(a, b), (torch.tensor(a), torch.tensor(b)), (torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))]


def _step_candidates(z, eps, a_from, a_to, reference, direction: str):
    """Models of the usual mistakes in a DDIM step from level ``a_from`` to ``a_to``."""
    sqrt_hint = "ẑ0 divides by √ᾱ and the new latent multiplies by √ᾱ and √(1 − ᾱ): write `** 0.5`."
    other = "denoising step (to the cleaner level)" if direction == "inverse" else "inverse step (to the noisier level)"
    # the levels swapped: the same rule the other way, i.e. the library's step of the other direction
    opposite = sampling.ddim_step if direction == "inverse" else sampling.ddim_inverse_step
    return [
        (lambda: opposite(z, eps, a_to, a_from),
         f"ᾱ of the wrong level: the two levels are swapped — that is the {other}.",
         "ẑ0 uses the level of the latent you are given (first ᾱ argument); the new latent uses the level you go to (second)."),
        (lambda: z, "ᾱ of the wrong level: the same ᾱ in both places, so the step returns z unchanged.",
         "ẑ0 uses the first ᾱ argument, the new latent the second."),
        (lambda: sampling.ddim_step(z, eps, a_from, 1.0), "You returned ẑ0, the predicted clean latent.",
         "after ẑ0, add the noise back at the new level: √ᾱ_new·ẑ0 + √(1 − ᾱ_new)·ε̂."),
        (lambda: reference(z, -eps, a_from, a_to), "Wrong sign of ε̂.", "ẑ0 = (z − √(1 − ᾱ)·ε̂) / √ᾱ, and the new latent *adds* √(1 − ᾱ_new)·ε̂."),
        (lambda: (z - (1 - a_from) * eps) / a_from * a_to + (1 - a_to) * eps, "Missing square roots: ᾱ used where √ᾱ belongs.", sqrt_hint),
        (lambda: (z - (1 - a_from) ** 0.5 * eps) / a_from * a_to + (1 - a_to) ** 0.5 * eps,
         "Missing square roots on ᾱ (kept on 1 − ᾱ).", sqrt_hint),
    ]


def _check_step(fn, name, reference, direction, pairs) -> bool:
    """The step on random tensors, ᾱ as floats and as 0-dim tensors; a form the function cannot
    take (e.g. ``torch.sqrt`` of a float) is skipped if another works. Returns whether it takes tensors."""
    z, eps = _step_inputs(2)
    takes_tensors = True
    for a, b in pairs:
        ref = reference(z, eps, a, b)
        worked, errors = [], []
        for fa, fb in _alpha_forms(a, b):
            try:
                out = _tensor(_call(fn, name, z, eps, fa, fb), name)
            except _Mistake as e:
                errors.append(e)
                takes_tensors = takes_tensors and not isinstance(fa, torch.Tensor)
                continue
            worked.append((fa, fb))
            _shape(out, tuple(z.shape), name)
            if not torch.equal(out, _tensor(_call(fn, name, z, eps, fa, fb), name)):
                _fail("Two calls with the same inputs gave different results: the step adds random noise.",
                      "DDIM with η = 0 is deterministic: no torch.randn in the step.")
            _diagnose(out, ref, _step_candidates(z, eps, a, b, reference, direction), name,
                      f"{reference.__name__} (ᾱ {a} → {b}, given as {type(fa).__name__}"
                      f"{'' if not isinstance(fa, torch.Tensor) else ' ' + str(fa.dtype)})")
        if not worked:
            raise errors[0]
    return takes_tensors


def _level_form(takes_tensors: bool):
    """ᾱ of the model as the step takes it: a 0-dim tensor, or a float."""
    return (lambda a: a) if takes_tensors else float


@_per_model
def _model_inversion(c: Components):
    """A short DDIM encoding (10-step grid, r = 0.5) of a toy scene, and its decoding with Q."""
    from .denoise import encode_decode
    from .toy.world import make_edit

    ex = make_edit(0, "colour")
    inv = ddim_invert(c, encode(c, ex.scene.image), "", encoding_ratio=0.5, steps=10, progress=False)
    return ex, inv, encode_decode(c, inv, ex.target, guidance=3.0, progress=False)


def check_inverse_step(fn: Callable, *, c: Components | None = None) -> None:
    """``fn(z, eps, alpha_bar_s, alpha_bar_t) -> z_t``: deterministic DDIM from level ``s`` to the
    noisier level ``t`` (library: :func:`~diffedit_lab.sampling.ddim_inverse_step`)."""
    name = "your inverse step"
    level = _level_form(_check_step(fn, name, sampling.ddim_inverse_step, "inverse", [(0.9, 0.7), (0.999, 0.3)]))
    c = _components(c)
    _, inv, _ = _model_inversion(c)
    levels, cond, unet = noise_levels(c, inv), encode_prompt(c, ""), sampling.unet_caller(c)
    for k, t in enumerate(inv.timesteps):
        with torch.inference_mode():
            eps = sampling.guided_noise(c, inv.trajectory[k], t, cond, None, 1.0, unet=unet)
        out = _tensor(_call(fn, name, inv.trajectory[k], eps, level(levels[k]), level(levels[k + 1])), name)
        if not _close(out, inv.trajectory[k + 1], rtol=1e-3, atol=1e-4):
            _fail(f"Right on random tensors but not in step {k} of the embedded model's DDIM encoding.",
                  "keep the dtype and device of the inputs; do not assume a shape.")
    _ok(f"DDIM inverse step: matches the library on random tensors (ᾱ as float and 0-dim tensors) and reproduces "
        f"the {inv.num_steps} steps of ddim_invert on the embedded model.")


def check_denoise_step(fn: Callable, *, c: Components | None = None) -> None:
    """``fn(z, eps, alpha_bar_t, alpha_bar_prev) -> z_prev``: deterministic DDIM (η = 0) from level
    ``t`` to the cleaner level ``t − 1`` (library: :func:`~diffedit_lab.sampling.ddim_step`)."""
    name = "your denoising step"
    level = _level_form(_check_step(fn, name, sampling.ddim_step, "denoise", [(0.3, 0.7), (0.05, 0.999)]))
    c = _components(c)
    ex, inv, dec = _model_inversion(c)
    levels = noise_levels(c, inv).flip(0)  # the decoding walks the levels backwards
    cond, uncond, unet = encode_prompt(c, ex.target), encode_prompt(c, ""), sampling.unet_caller(c)
    for i, t in enumerate(dec.timesteps):
        with torch.inference_mode():
            eps = sampling.guided_noise(c, dec.trajectory[i], t, cond, uncond, 3.0, unet=unet)
        out = _tensor(_call(fn, name, dec.trajectory[i], eps, level(levels[i]), level(levels[i + 1])), name)
        if not _close(out, dec.trajectory[i + 1], rtol=1e-3, atol=1e-4):
            _fail(f"Right on random tensors but not in step {i} of the embedded model's decoding.",
                  "keep the dtype and device of the inputs; do not assume a shape.")
    _ok(f"DDIM denoising step (η = 0): matches the library on random tensors (ᾱ as float and 0-dim tensors) and "
        f"reproduces the {len(dec.timesteps)} guided steps of the embedded model's decoding.")


# --------------------------------------------------------------------------- the loops

def check_ddim_invert(fn: Callable, *, c: Components | None = None) -> None:
    """``fn(c, z0, steps, strength) -> trajectory`` (T + 1, B, C, h, w), ``z0`` first: the unconditional
    DDIM encoding loop (library: :func:`~diffedit_lab.inversion.ddim_invert`)."""
    name = "your encoding loop"
    c = _components(c)
    _, inv, _ = _model_inversion(c)
    z0 = inv.z0
    out = _tensor(_call(fn, name, c, z0, inv.steps, inv.strength), name)
    T = inv.num_steps
    _shape(out, tuple(inv.trajectory.shape), name, {
        tuple(inv.trajectory[1:].shape): ("The trajectory lacks z0 (T latents, expected T + 1).",
                                          "start the list with z0, then append the latent after each step."),
        tuple(z0.shape): ("You returned only the last latent.", "return `torch.stack(trajectory)` with z0 first."),
    })
    if _close(out, inv.trajectory, rtol=1e-3, atol=1e-4):
        _ok(f"DDIM encoding loop: the {T} inverse steps equal ddim_invert's trajectory on the embedded model.")
        return
    if _close(out, inv.trajectory.flip(0), rtol=1e-3, atol=1e-4):
        _fail("The trajectory is in reverse order.", "z0 first, the noisiest latent last.")
    first = next(k for k in range(1, T + 1) if not _close(out[k], inv.trajectory[k], rtol=1e-3, atol=1e-4))
    _fail(f"Latent {first} of the trajectory differs from ddim_invert's (the first {first - 1} agree).",
          "step k goes from levels[k] to levels[k + 1] (`exercises.noise_levels(c, inv)`), with ε̂ predicted at the "
          "*target* timestep timesteps[k] from the current latent, unconditionally (empty text, no guidance).")


@_per_model
def _model_edit(c: Components):
    from .toy.world import make_edit

    ex = make_edit(0, "colour")
    z0 = encode(c, ex.scene.image)
    inv = ddim_invert(c, z0, ex.source, encoding_ratio=0.5, steps=10, progress=False)
    mask = as_latent_mask(c, ex.mask.astype("float32"), z0)[:, 0]
    return ex, inv, mask


def _reference(c, inv, mask, prompt, guidance):
    return masked_denoise(c, inv, mask, prompt, guidance=guidance, progress=False).latents


def check_masked_denoise(fn: Callable, *, c: Components | None = None) -> None:
    """``fn(c, inversion, mask, prompt, guidance) -> latents`` (B, C, h, w): DiffEdit's decoding loop
    from ``inversion.latents``, guided DDIM steps with ``prompt`` (Q), each followed by the blend
    ``M·y + (1 − M)·x`` with the encoded latent of the same level (library:
    :func:`~diffedit_lab.denoise.masked_denoise`)."""
    import warnings

    name = "your masked decoding"
    c = _components(c)
    ex, inv, mask = _model_edit(c)
    w = 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _reference(c, inv, mask, ex.target, w)
        torch.manual_seed(0)
        out = _tensor(_call(fn, name, c, inv, mask, ex.target, w), name)
        _shape(out, tuple(ref.shape), name, {
            tuple(inv.trajectory.shape[:1] + ref.shape): ("You returned the whole trajectory.", "return only the last latents."),
        })
        if _close(out, ref, rtol=1e-3, atol=1e-4):
            # a second mask (random cells): the blend must follow the mask given
            g = _gen(3)
            mask2 = (torch.rand(mask.shape, generator=g) > 0.5).float()
            out2 = _tensor(_call(fn, name, c, inv, mask2, ex.target, w), name)
            if not _close(out2, _reference(c, inv, mask2, ex.target, w), rtol=1e-3, atol=1e-4):
                _fail("Right for one mask but not for another.", "use the `mask` argument in the blend, 1 = edit.")
            _ok(f"masked decoding: {inv.num_steps} guided DDIM steps with Q from the inverted latent, each blended with "
                f"the encoded latent of the same level — equals masked_denoise on the embedded model for two masks.")
            return
        torch.manual_seed(1)
        if not torch.equal(_tensor(_call(fn, name, c, inv, mask, ex.target, w), name), out):
            _fail("Denoising from fresh noise instead of the inverted latent: your result changes with the random seed.",
                  "start from `inversion.latents` (the end of the DDIM encoding), not torch.randn.")
        moved = replace(inv, trajectory=torch.cat([inv.trajectory[:-1], inv.trajectory[-1:] + 1.0]))
        if _close(_tensor(_call(fn, name, c, moved, mask, ex.target, w), name), out, rtol=1e-6, atol=1e-7):
            _fail("Denoising from fresh noise instead of the inverted latent: your result does not depend on "
                  "inversion.latents.", "start from `inversion.latents` (the end of the DDIM encoding).")
        keep = (mask == 0)[:, None].expand_as(ref)
        if not _close(out[keep], inv.z0[keep]):
            if inv.num_steps > 1 and _close(out[keep], inv.trajectory[1][keep]):
                _fail("Blending with the inverted latent of the wrong (noisier) step: x_t instead of x_{t−1}, so the "
                      "result is never blended back to z0 (diffusers' behaviour).",
                      "after the step that reaches level t−1, blend with the encoded latent of level t−1: after step i "
                      "of T use inversion.trajectory[T − 1 − i] (the last one is z0).")
            edit = (mask == 1)[:, None].expand_as(ref)
            if _close(out[edit], inv.z0[edit]):
                _fail("The mask is inverted: the input is kept where the edit should be.",
                      "M = 1 where the image is edited: M·y + (1 − M)·x.")
            _fail("Outside the mask the result is not the input latent z0: the blend is missing or wrong.",
                  "after every step: z = mask * z + (1 - mask) * x, with x the encoded latent of the level reached "
                  "(denoise.blend); after the last step x is z0.")
        for wrong, mistake, hint in [
            (lambda: _reference(c, inv, mask, ex.target, 1.0), "Guidance ignored: your loop uses ε(Q) alone.",
             "ε̂ = ε(∅) + w·(ε(Q) − ε(∅)) (sampling.classifier_free_guidance), with the empty text's embedding for ∅."),
            (lambda: _reference(c, inv, mask, ex.source, w), "Source and target swapped: you decoded with the source text R.",
             "the decoding is conditioned on the query Q (`prompt`), not on the text of the encoding."),
            (lambda: _reference(c, inv, mask, "", w), "Decoded with the empty text instead of the query Q.",
             "encode `prompt` for the conditional branch."),
        ]:
            if _close(out, wrong(), rtol=1e-3, atol=1e-4):
                _fail(mistake, hint)
    err = (out - ref.double()).abs().max().item()
    _fail(f"Your decoded latents differ from masked_denoise's (largest difference {err:.3g}); none of the usual "
          "mistakes explains it.",
          "check each step: ε̂ at the step's timestep, ᾱ of the current and the next level (noise_levels(c, inv) "
          "read backwards), then the blend with the encoded latent of the level just reached.")


# --------------------------------------------------------------------------- the whole edit

def check_edit(fn: Callable, *, c: Components | None = None) -> None:
    """``fn(c, image, source, target, *, steps, seed) -> (mask, latents)``: DiffEdit's three steps at
    the model's recorded settings (``EditSettings.for_model(c)``) — the mask (a MaskResult or its (B, h, w) tensor)
    and the edited latents (library: :func:`~diffedit_lab.edit.edit`)."""
    from .denoise import encode_decode, sdedit
    from .edit import edit
    from .toy.world import make_edit

    name = "your edit"
    c = _components(c)
    ex = make_edit(3, "colour")
    steps, seed = 10, 0
    ref = edit(c, ex.scene.image, ex.source, ex.target, steps=steps, seed=seed, progress=False)
    answer = _call(fn, name, c, ex.scene.image, ex.source, ex.target, steps=steps, seed=seed)
    if not isinstance(answer, tuple) or len(answer) != 2:
        _fail(f"`{name}` must return a pair (mask, latents), got {type(answer).__name__}.", "`return mask, out.latents`.")
    mask, latents = answer
    mask = _tensor(getattr(mask, "mask", mask), name + " (mask)")
    latents = _tensor(latents, name + " (latents)")
    if mask.numel() != ref.mask.mask.numel() or not _close(mask.reshape(ref.mask.mask.shape), ref.mask.mask):
        _fail("Your mask differs from edit()'s.", "noise_diff_mask with the model's recorded settings: n, mask_noise "
              "(the noise strength s), clamp_ratio, threshold, rescale, fill_holes, close and guidance from "
              "s = EditSettings.for_model(c), the same steps and seed.")
    _shape(latents, tuple(ref.latents.shape), name + " (latents)")
    if _close(latents, ref.latents, rtol=1e-3, atol=1e-4):
        _ok("whole edit: your mask and edited latents equal edit()'s at the model's recorded settings.")
        return
    s, z0 = ref.edit_settings, ref.inversion.z0
    for wrong, mistake, hint in [
        (lambda: edit(c, ex.scene.image, ex.target, ex.source, steps=steps, seed=seed, progress=False).latents,
         "Source and target swapped: you decoded with the source text R.",
         "the mask compares R (source) with Q (target); the decoding uses Q."),
        (lambda: masked_denoise(c, ref.inversion, ref.mask, ex.source, guidance=s.guidance, progress=False).latents,
         "Source and target swapped: you decoded with the source text R.", "decode with the target Q."),
        (lambda: encode_decode(c, ref.inversion, ex.target, guidance=s.guidance, progress=False).latents,
         "No mask in the decoding (that is the encode–decode baseline).", "pass the mask to masked_denoise."),
        (lambda: sdedit(c, z0, ex.target, strength=s.encoding_ratio, steps=steps, guidance=s.guidance, seed=seed,
                        progress=False).latents,
         "Denoising from fresh noise instead of the inverted latent (that is SDEdit).",
         "DDIM-encode z0 with ddim_invert and decode from its result."),
        (lambda: masked_denoise(c, ref.inversion, ref.mask, ex.target, guidance=1.0, progress=False).latents,
         "Guidance ignored: the decoding ran with w = 1.", "pass guidance=s.guidance (s = EditSettings.for_model(c)) to masked_denoise."),
    ]:
        if _close(latents, wrong(), rtol=1e-3, atol=1e-4):
            _fail(mistake, hint)
    _fail("Your edited latents differ from edit()'s.", "ddim_invert(c, z0, '', encoding_ratio=s.encoding_ratio, "
          "steps=steps), then masked_denoise with the mask, the target and s.guidance (s = EditSettings.for_model(c)).")
