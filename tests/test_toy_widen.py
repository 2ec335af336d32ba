"""Widening a toy model's latent channels keeps what it computes (diffedit_lab.toy.widen)."""

import pytest
import torch

from diffedit_lab.toy import train
from diffedit_lab.toy.widen import widen_unet, widen_vae


def test_a_widened_vae_decodes_as_before_and_encodes_the_old_latents_first():
    torch.manual_seed(0)
    old = train.vae_model(32, 4).eval()
    for p in old.parameters():  # a VAE that is not at its initialisation
        p.data += 0.05 * torch.randn_like(p)
    new = widen_vae(old, 8).eval()
    assert new.config.latent_channels == 8
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    d_old, d_new = old.encode(x).latent_dist, new.encode(x).latent_dist
    assert torch.allclose(d_new.mean[:, :4], d_old.mean, atol=1e-5)
    assert torch.allclose(d_new.logvar[:, :4], d_old.logvar, atol=1e-5)
    assert d_new.mean[:, 4:].abs().max() > 0  # the new channels carry something to learn from
    z_new = torch.randn(2, 4, 8, 8)
    assert torch.allclose(new.decode(torch.cat([d_old.mean, z_new], 1)).sample, old.decode(d_old.mean).sample, atol=1e-5)
    with pytest.raises(ValueError, match="fewer"):
        widen_vae(new, 4)


def test_a_widened_unet_predicts_the_old_channels_as_before_and_zero_on_the_new():
    torch.manual_seed(1)
    old = train.unet_model(8).eval()
    for p in old.parameters():
        p.data += 0.02 * torch.randn_like(p)
    new = widen_unet(old, 8).eval()
    z, t, text = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 5, 128)
    before = old(z, t, text).sample
    after = new(torch.cat([z, torch.randn(2, 4, 8, 8)], 1), t, text).sample
    assert after.shape == (2, 8, 8, 8)
    assert torch.allclose(after[:, :4], before, atol=1e-4) and after[:, 4:].abs().max() == 0
    loss = after[:, 4:].square().mean() + (new(torch.cat([z, z], 1), t, text).sample[:, 4:] - 1).square().mean()
    loss.backward()
    assert new.conv_out.weight.grad[4:].abs().max() > 0  # the new outputs learn
