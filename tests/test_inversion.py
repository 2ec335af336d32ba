"""ddim_invert: the trajectory, the timestep alignment with denoising, exactness of DDIM encoding."""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from diffedit_lab import ddim_invert, encode, encode_decode
from diffedit_lab.sampling import denoising_timesteps, inversion_timesteps

SD_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                    set_alpha_to_one=False, steps_offset=1)


def test_trajectory_shape_and_start(tiny_components, tiny_image):
    z0 = encode(tiny_components, tiny_image)
    inv = ddim_invert(tiny_components, z0, strength=0.8, steps=10, progress=False)
    assert inv.trajectory.shape == (9, 1, 4, 16, 16) and inv.num_steps == 8
    assert torch.equal(inv.z0, z0) and torch.equal(inv.latents, inv.trajectory[-1])
    assert inv.timesteps.tolist() == [1, 101, 201, 301, 401, 501, 601, 701]
    assert (inv.steps, inv.strength, inv.guidance) == (10, 0.8, 1.0)
    assert inv.to_diffusers().shape == (1, 8, 4, 16, 16) and torch.equal(inv.to_diffusers()[:, 0], inv.latents)
    assert inv.latents.std() > 2 * z0.std()  # noisier as it goes


@pytest.mark.parametrize("steps, strength", [(50, 0.8), (10, 1.0), (7, 0.5), (30, 0.6)])
def test_inverse_timesteps_mirror_the_denoising_ones(steps, strength):
    """Checked, not assumed (diffusers #5145/#10695): with SD's config the inverse schedule is the
    denoising schedule reversed, and every inverse step starts at the level the last one reached."""
    fwd, inv = DDIMScheduler(**SD_SCHEDULER), DDIMInverseScheduler(**SD_SCHEDULER)
    down, up = denoising_timesteps(fwd, steps, strength), inversion_timesteps(inv, steps, strength)
    assert torch.equal(down.flip(0), up)
    ratio = 1000 // steps
    assert all(int(b) - ratio == int(a) for a, b in zip(up, up[1:]))  # step from level a to level b
    assert int(up[0]) - ratio < 0  # the first step starts from the clean level...
    assert inv.initial_alpha_cumprod == fwd.final_alpha_cumprod == fwd.alphas_cumprod[0]  # ...ᾱ = ᾱ_0 both ways


def test_trailing_spacing_misaligns_when_steps_do_not_divide_1000():
    """The documented caveat: 'trailing' timesteps are rounded, the step size is 1000 // steps."""
    inv = DDIMInverseScheduler(**{**SD_SCHEDULER, "timestep_spacing": "trailing"})
    up = inversion_timesteps(inv, 30, 1.0)
    gaps = {int(b - a) for a, b in zip(up, up[1:])}
    assert gaps != {1000 // 30}


class ConstantNoise(torch.nn.Module):
    """A stand-in denoiser whose prediction ε does not depend on z_t or t."""

    def __init__(self, eps: torch.Tensor):
        super().__init__()
        self.eps = eps
        self.dtype = torch.float32

    def forward(self, z, t, encoder_hidden_states):
        return types.SimpleNamespace(sample=self.eps.expand_as(z))


def test_ddim_encoding_is_exactly_invertible_when_eps_is_constant(tiny_components, tiny_image):
    """DDIM inversion approximates ε(z_t, t) by ε(z_s, t); with a constant ε that is exact, so
    decoding the encoding gives z0 back — a check of the timestep/noise-level bookkeeping."""
    eps = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    c = dataclasses.replace(tiny_components, unet=ConstantNoise(eps))
    z0 = encode(tiny_components, tiny_image)
    inv = ddim_invert(c, z0, strength=1.0, steps=10, progress=False)
    back = encode_decode(c, inv, "", guidance=1.0, progress=False)
    assert (back.latents - z0).abs().max() < 1e-4
    # the trajectory is the DDIM marginal z_t = √ᾱ_t x̂0 + √(1 − ᾱ_t) ε, where z0 counts as level
    # ᾱ_0 = alphas_cumprod[0] (set_alpha_to_one=False), so x̂0 = (z0 − √(1 − ᾱ_0) ε) / √ᾱ_0
    alphas = tiny_components.scheduler.alphas_cumprod
    x0 = (z0 - (1 - alphas[0]).sqrt() * eps) / alphas[0].sqrt()
    for k, a in enumerate(alphas[inv.timesteps], start=1):
        assert torch.allclose(inv.trajectory[k], a.sqrt() * x0 + (1 - a).sqrt() * eps, atol=1e-5)


def test_caption_and_guidance_are_options(tiny_components, tiny_image):
    z0 = encode(tiny_components, tiny_image)
    plain = ddim_invert(tiny_components, z0, steps=4, progress=False)
    again = ddim_invert(tiny_components, z0, steps=4, progress=False)
    guided = ddim_invert(tiny_components, z0, "a red circle", steps=4, guidance=3.0, progress=False)
    assert torch.equal(plain.trajectory, again.trajectory)  # deterministic
    assert not torch.allclose(plain.latents, guided.latents)
    assert guided.guidance == 3.0 and guided.prompt_embeds.shape[0] == 1


def test_image_input_mean_or_seeded_sample(tiny_components, tiny_image):
    mean = ddim_invert(tiny_components, tiny_image, steps=2, strength=0.5, progress=False)
    assert torch.equal(mean.z0, encode(tiny_components, tiny_image))
    sampled = ddim_invert(tiny_components, tiny_image, steps=2, strength=0.5, seed=3, progress=False)
    assert torch.equal(sampled.z0, encode(tiny_components, tiny_image, seed=3, sample=True))


def test_progress_bar_can_be_turned_off(tiny_components, tiny_image, capsys):
    z0 = encode(tiny_components, tiny_image)
    ddim_invert(tiny_components, z0, steps=2, strength=1.0, progress=False)
    assert "DDIM inversion" not in capsys.readouterr().err
    ddim_invert(tiny_components, z0, steps=2, strength=1.0, progress=True)
    assert "DDIM inversion" in capsys.readouterr().err
