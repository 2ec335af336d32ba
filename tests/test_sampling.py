"""The paper's update rules (sampling.ddim_step, ddim_inverse_step, classifier_free_guidance)
give diffusers' DDIMScheduler.step / DDIMInverseScheduler.step to the last bit, for every
prediction type and with ẑ0 clipping."""

from __future__ import annotations

import pytest
import torch

from diffedit_lab import load_components
from diffedit_lab.models import fresh_schedulers
from diffedit_lab.sampling import (
    classifier_free_guidance,
    ddim_inverse_step,
    ddim_step,
    model_prediction,
    noise_levels,
)
from diffedit_lab.testing import save_tiny_model


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("clip", [False, True])
def test_update_rules_equal_the_schedulers_step(tmp_path, prediction_type, clip):
    save_tiny_model(tmp_path / "m", prediction_type=prediction_type)
    c = load_components(tmp_path / "m", device="cpu")
    scheduler, inverse = fresh_schedulers(c)
    if clip:
        for s in (scheduler, inverse):
            s.register_to_config(clip_sample=True, clip_sample_range=0.3)
    g = torch.Generator().manual_seed(0)
    for steps in (4, 10, 50):
        scheduler.set_timesteps(steps)
        inverse.set_timesteps(steps)
        for t in scheduler.timesteps:
            z, out = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
            a_t, a_prev = noise_levels(scheduler, t)
            eps, x0 = model_prediction(scheduler, out, z, a_t)
            assert torch.equal(ddim_step(z, eps, a_t, a_prev, pred_x0=x0), scheduler.step(out, t, z).prev_sample)
        for t in inverse.timesteps:
            z, out = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
            a_s, a_t = noise_levels(inverse, t)
            eps, x0 = model_prediction(inverse, out, z, a_s)
            assert torch.equal(ddim_inverse_step(z, eps, a_s, a_t, pred_x0=x0), inverse.step(out, t, z).prev_sample)


def test_ddim_step_is_the_equation():
    z, eps = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.25])
    a_t, a_prev = 0.25, 0.64
    x0 = (z - 0.75 ** 0.5 * eps) / 0.5
    assert torch.allclose(ddim_step(z, eps, a_t, a_prev), 0.8 * x0 + 0.6 * eps)
    # running the step up again from a_prev to a_t with the same ε gives z back
    assert torch.allclose(ddim_inverse_step(ddim_step(z, eps, a_t, a_prev), eps, a_prev, a_t), z)


def test_classifier_free_guidance():
    u, c = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0])
    assert torch.equal(classifier_free_guidance(u, c, 1.0), c)
    assert torch.equal(classifier_free_guidance(u, c, 0.0), u)
    assert torch.equal(classifier_free_guidance(u, c, 2.0), torch.tensor([5.0, -2.0]))
