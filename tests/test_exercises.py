"""The exercise checkers: a correct answer passes (whatever its style), each usual mistake gets its own hint.

The answers below are written as a student would, from the equations, not with the library's
functions — except where a mistake is about *how a loop uses* the library's pieces.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import diffedit_lab as dl
from diffedit_lab import exercises as ex
from diffedit_lab.latents import encode_prompt
from diffedit_lab.sampling import unet_output


def fails_with(check, fn, *words):
    with pytest.raises(AssertionError) as info:
        check(fn)
    message = str(info.value)
    for w in words:
        assert w.lower() in message.lower(), message
    assert "Hint:" in message
    return message


# --------------------------------------------------------------------------- difference

def difference_ok(s, t):
    return (t - s).abs().mean(dim=(1, 2))


def difference_loop_float64(s, t):  # another style: a loop over draws, numpy, float64
    total = 0
    for i in range(s.shape[1]):
        total = total + np.abs(t[:, i].double().numpy() - s[:, i].double().numpy()).mean(axis=1)
    return torch.from_numpy(total / s.shape[1])


@pytest.mark.parametrize("fn", [difference_ok, difference_loop_float64])
def test_difference_correct_answers_pass(fn, capsys):
    assert ex.check_difference(fn) is None
    assert "difference map" in capsys.readouterr().out


def test_difference_signed():
    fails_with(ex.check_difference, lambda s, t: (t - s).mean(dim=(1, 2)), "signed instead of absolute")


def test_difference_one_draw():
    fails_with(ex.check_difference, lambda s, t: (t - s)[:, 0].abs().mean(1), "only one draw")


def test_difference_loop_that_overwrites_is_one_draw():
    def last_only(s, t):
        for i in range(s.shape[1]):
            d = (t[:, i] - s[:, i]).abs().mean(1)
        return d

    fails_with(ex.check_difference, last_only, "only one draw")


def test_difference_wrong_axes_named_by_shape():
    fails_with(ex.check_difference, lambda s, t: (t - s).abs().mean(2), "not over the draws")


def test_difference_stub_fails():
    def stub(s, t):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        ex.check_difference(stub)


# --------------------------------------------------------------------------- normalisation

def normalize_ok(D, kappa):
    bound = kappa * D.mean(dim=(1, 2), keepdim=True)
    return torch.minimum(D, bound) / bound


def normalize_clamp_style(D, kappa):  # another style: clamp with a per-image tensor bound
    bound = kappa * D.flatten(1).mean(1)[:, None, None]
    return (D / bound).clamp(max=1.0)


@pytest.mark.parametrize("fn", [normalize_ok, normalize_clamp_style])
def test_normalize_correct_answers_pass(fn):
    assert ex.check_normalize(fn) is None


def test_normalize_batch_wide():
    def batch_wide(D, kappa):
        bound = kappa * D.mean()
        return torch.minimum(D, bound) / bound

    fails_with(ex.check_normalize, batch_wide, "batch-wide", "per-image")


def test_normalize_missing_clamp():
    fails_with(ex.check_normalize, lambda D, k: D / (k * D.mean(dim=(1, 2), keepdim=True)), "missing clamp")


def test_normalize_ignores_kappa():
    fails_with(ex.check_normalize, lambda D, k: normalize_ok(D, 3.0), "clamp_ratio")


# --------------------------------------------------------------------------- the steps

def step_pow(z, eps, a_from, a_to):  # the same equation serves both directions
    pred_x0 = (z - (1 - a_from) ** 0.5 * eps) / a_from ** 0.5
    return a_to ** 0.5 * pred_x0 + (1 - a_to) ** 0.5 * eps


def step_math(z, eps, a_from, a_to):  # math.sqrt: floats and 0-dim tensors
    a_from, a_to = float(a_from), float(a_to)
    return math.sqrt(a_to) * (z - math.sqrt(1 - a_from) * eps) / math.sqrt(a_from) + math.sqrt(1 - a_to) * eps


def step_torch_sqrt(z, eps, a_from, a_to):  # torch.sqrt: 0-dim tensors only
    pred_x0 = (z - torch.sqrt(1 - a_from) * eps) / torch.sqrt(a_from)
    return torch.sqrt(a_to) * pred_x0 + torch.sqrt(1 - a_to) * eps


@pytest.mark.parametrize("check", [ex.check_inverse_step, ex.check_denoise_step])
@pytest.mark.parametrize("fn", [step_pow, step_math, step_torch_sqrt])
def test_steps_correct_answers_pass(check, fn):
    assert check(fn) is None


@pytest.mark.parametrize("check", [ex.check_inverse_step, ex.check_denoise_step])
def test_steps_alpha_of_the_wrong_level(check):
    fails_with(check, lambda z, e, a, b: step_pow(z, e, b, a), "wrong level", "swapped")


@pytest.mark.parametrize("check", [ex.check_inverse_step, ex.check_denoise_step])
def test_steps_same_alpha_twice(check):
    fails_with(check, lambda z, e, a, b: step_pow(z, e, b, b), "wrong level", "same")


def test_denoise_step_with_noise_is_not_ddim():
    fails_with(ex.check_denoise_step, lambda z, e, a, b: step_pow(z, e, a, b) + 0.1 * torch.randn_like(z),
               "random noise")


def test_inverse_step_missing_square_roots():
    fails_with(ex.check_inverse_step, lambda z, e, a, b: b * (z - (1 - a) * e) / a + (1 - b) * e, "square roots")


def test_inverse_step_returns_pred_x0():
    fails_with(ex.check_inverse_step, lambda z, e, a, b: (z - (1 - a) ** 0.5 * e) / a ** 0.5, "ẑ0")


# --------------------------------------------------------------------------- the loops

def encoding_loop(c, z0, steps, strength):
    """A student's DDIM encoding loop with the library's step."""
    inv = dl.ddim_invert(c, z0, "", strength=strength, steps=steps, progress=False)  # for the timesteps only
    levels = ex.noise_levels(c, inv)
    empty = encode_prompt(c, "")
    z, trajectory = z0, [z0]
    for k, t in enumerate(inv.timesteps):
        eps = unet_output(c, z, t, empty)
        z = step_pow(z, eps, levels[k], levels[k + 1])
        trajectory.append(z)
    return torch.stack(trajectory)


def test_encoding_loop_passes_and_missing_z0_is_named():
    assert ex.check_ddim_invert(encoding_loop) is None
    fails_with(ex.check_ddim_invert, lambda *a: encoding_loop(*a)[1:], "lacks z0")


def decoding_loop(c, inversion, mask, prompt, guidance, *, start="inverted", blend_with="same", guided=True,
                  text="prompt"):
    """A student's masked decoding loop, with switches for the usual mistakes."""
    levels = ex.noise_levels(c, inversion)
    T = inversion.num_steps
    cond = inversion.prompt_embeds if text == "source" else encode_prompt(c, prompt)
    uncond = encode_prompt(c, "")
    if start == "inverted":
        z = inversion.latents
    elif start == "fresh":
        z = torch.randn_like(inversion.latents)
    else:  # fresh but seeded: the same every call
        z = torch.randn(inversion.latents.shape, generator=torch.Generator().manual_seed(0))
    m = mask[:, None]
    for i in range(T):
        t = inversion.timesteps[T - 1 - i]
        e_c = unet_output(c, z, t, cond)
        eps = unet_output(c, z, t, uncond) + guidance * (e_c - unet_output(c, z, t, uncond)) if guided else e_c
        z = step_pow(z, eps, levels[T - i], levels[T - 1 - i])
        x = inversion.trajectory[T - 1 - i] if blend_with == "same" else inversion.trajectory[T - i]
        z = m * z + (1 - m) * x
    return z


def test_masked_denoise_correct_loop_passes(capsys):
    assert ex.check_masked_denoise(decoding_loop) is None
    assert "masked decoding" in capsys.readouterr().out


@pytest.mark.parametrize("start", ["fresh", "seeded"])
def test_masked_denoise_fresh_noise(start):
    fails_with(ex.check_masked_denoise, lambda *a: decoding_loop(*a, start=start), "fresh noise", "inversion.latents")


def test_masked_denoise_blend_one_step_too_noisy():
    fails_with(ex.check_masked_denoise, lambda *a: decoding_loop(*a, blend_with="noisier"), "wrong (noisier) step")


def test_masked_denoise_guidance_ignored():
    fails_with(ex.check_masked_denoise, lambda *a: decoding_loop(*a, guided=False), "guidance ignored")


def test_masked_denoise_source_and_target_swapped():
    fails_with(ex.check_masked_denoise, lambda *a: decoding_loop(*a, text="source"), "source and target swapped")


def test_masked_denoise_inverted_mask():
    fails_with(ex.check_masked_denoise, lambda c, inv, m, *a: decoding_loop(c, inv, 1 - m, *a), "mask is inverted")


def test_noise_levels_match_the_scheduler(tiny_components):
    """levels[k] is the ᾱ of the k-th latent: a DDIM step between them reproduces the scheduler's inversion."""

    z0 = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    inv = dl.ddim_invert(tiny_components, z0, "", strength=0.6, steps=10, progress=False)
    levels = ex.noise_levels(tiny_components, inv)
    assert levels.shape == (inv.num_steps + 1,)
    assert torch.all(levels[1:] < levels[:-1])  # noisier and noisier
    assert torch.allclose(encoding_loop(tiny_components, z0, 10, 0.6), inv.trajectory, atol=1e-5)


def edit_steps(c, image, source, target, *, steps, seed, decode_with="target"):
    """A student's whole edit from the library's three steps."""
    s = dl.EditSettings.for_model(c)  # the model's recorded settings, as edit() uses them
    z0 = dl.encode(c, image)
    mask = dl.noise_diff_mask(c, z0, source, target, n=s.n, mask_noise=s.mask_noise, clamp_ratio=s.clamp_ratio,
                              threshold=s.threshold, fill_holes=s.fill_holes, rescale=s.rescale, close=s.close,
                              guidance=s.guidance, steps=steps, seed=seed, progress=False)
    inv = dl.ddim_invert(c, z0, "", encoding_ratio=s.encoding_ratio, steps=steps, progress=False)
    out = dl.masked_denoise(c, inv, mask, target if decode_with == "target" else source, guidance=s.guidance,
                            progress=False)
    return mask, out.latents


def test_edit_passes_and_swapped_texts_are_named():
    assert ex.check_edit(edit_steps) is None
    fails_with(ex.check_edit, lambda *a, **k: edit_steps(*a, **k, decode_with="source"), "source and target swapped")


def test_schedule_matches_an_inversion(tiny_components):
    inv = dl.ddim_invert(tiny_components, torch.zeros(1, 4, 16, 16), "", strength=0.5, steps=10, progress=False)
    timesteps, levels = ex.schedule(tiny_components, 10, 0.5)
    assert torch.equal(timesteps, inv.timesteps)
    assert torch.equal(levels, ex.noise_levels(tiny_components, inv))


# --------------------------------------------------------------------------- the notebooks

EXERCISE_DIR = Path(__file__).resolve().parents[1] / "notebooks" / "exercises"
EXERCISES = sorted(EXERCISE_DIR.glob("*.ipynb"))


def test_there_are_four_exercises_with_solutions():
    names = [p.name for p in EXERCISES]
    assert len(names) >= 4, names
    for name in names:
        assert (EXERCISE_DIR / "solutions" / name).exists(), f"no solution notebook for {name}"


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("student", EXERCISES, ids=lambda p: p.stem)
def test_each_student_stub_fails_its_check(student):
    """Run the student version as a student would, untouched: every check cell must fail, on the stub."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(student, as_version=4)
    stubs = [c for c in nb.cells if "raise NotImplementedError()" in c.source]
    checks = [c for c in nb.cells if "check" in c.metadata.get("tags", [])]
    assert stubs and len(checks) >= len(stubs), "every stub needs a check cell"
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(student.parent)}}).execute()
    for cell in checks:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert errors, f"{student.name}: a check cell passed with the stub:\n{cell.source}"
        assert errors[0].ename in ("NotImplementedError", "AssertionError"), (errors[0].ename, errors[0].evalue)
    # and the first check fails on the stub itself, not on something else
    first = next(o for o in checks[0].outputs if o.output_type == "error")
    assert first.ename == "NotImplementedError"
