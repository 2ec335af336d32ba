"""diffedit_lab.fast_unet: bit-for-bit diffusers' UNet forward, and the cases it hands back to diffusers."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor

from diffedit_lab import fast_unet
from diffedit_lab.sampling import unet_caller


def sd1_like(**over) -> UNet2DConditionModel:
    """A small UNet shaped like SD 1.x: conv projections, one head count, a down block without attention."""
    torch.manual_seed(0)
    cfg = dict(sample_size=16, block_out_channels=(32, 64, 64), layers_per_block=1, cross_attention_dim=24,
               down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
               up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
               attention_head_dim=4, norm_num_groups=8)
    return UNet2DConditionModel(**{**cfg, **over}).eval()


def sd2_like() -> UNet2DConditionModel:
    """Shaped like SD 2.x: linear projections, a head size per block, upcast attention, two layers per block."""
    return sd1_like(use_linear_projection=True, attention_head_dim=(2, 4, 8), upcast_attention=True,
                    layers_per_block=2)


def run_both(unet, batch=2, size=(16, 16), timestep=torch.tensor(321), dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(batch, 4, *size, generator=g).to(dtype)
    ctx = torch.randn(batch, 7, unet.config.cross_attention_dim, generator=g).to(dtype)
    with torch.inference_mode():
        return fast_unet.unet_forward(unet, z, timestep, ctx), unet(z, timestep, encoder_hidden_states=ctx).sample


@pytest.mark.parametrize("build", [sd1_like, sd2_like], ids=["sd1-like", "sd2-like"])
@pytest.mark.parametrize("batch,size", [(1, (16, 16)), (3, (16, 16)), (2, (12, 20))])
def test_bit_identical_to_diffusers(build, batch, size):
    """(12, 20): not a multiple of the up-sampling factor, diffusers passes explicit sizes."""
    unet = build()
    assert fast_unet.usable(unet)
    ours, theirs = run_both(unet, batch, size)
    assert ours.shape == theirs.shape == (batch, 4, *size)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("timestep", [500, 500.0, torch.tensor(7), torch.tensor([900, 900])],
                         ids=["int", "float", "0-d", "1-d"])
def test_every_timestep_form(timestep):
    ours, theirs = run_both(sd1_like(), timestep=timestep)
    assert torch.equal(ours, theirs)


def test_bfloat16_is_identical_too():
    ours, theirs = run_both(sd1_like().to(torch.bfloat16), dtype=torch.bfloat16)
    assert ours.dtype == torch.bfloat16 and torch.equal(ours, theirs)


def test_shipped_and_tiny_models_are_supported(tiny_components):
    from diffedit_lab import load_components

    for c in (tiny_components, load_components(device="cpu", dtype=torch.float32)):
        assert fast_unet.usable(c.unet), c.name
        size = c.unet.config.sample_size
        ours, theirs = run_both(c.unet, 2, (size, size))
        assert torch.equal(ours, theirs)


def _hook(unet):
    unet.down_blocks[0].resnets[0].register_forward_hook(lambda *a: None)


def _replace_forward(unet):
    conv = unet.conv_in
    conv.forward = lambda x, _f=conv.forward: _f(x)  # what accelerate's offloading does


@pytest.mark.parametrize("change", [
    lambda u: u.train(),
    _hook,
    _replace_forward,
    lambda u: u.set_attn_processor(AttnProcessor()),
    lambda u: u.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4),
    lambda u: u.fuse_qkv_projections(),
], ids=["training", "hook", "replaced-forward", "other-processor", "freeu", "fused-qkv"])
def test_what_it_does_not_cover_goes_to_diffusers(change):
    unet = sd1_like()
    change(unet)
    assert not fast_unet.usable(unet)


@pytest.mark.parametrize("over", [dict(resnet_time_scale_shift="scale_shift"), dict(class_embed_type="timestep"),
                                  dict(time_embedding_type="fourier", time_embedding_dim=32)],
                         ids=["scale-shift", "class-embedding", "fourier-time"])
def test_other_configurations_go_to_diffusers(over):
    assert not fast_unet.usable(sd1_like(**over))


def test_a_global_hook_goes_to_diffusers():
    unet = sd1_like()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        assert not fast_unet.usable(unet)
    finally:
        handle.remove()
    assert fast_unet.usable(unet)


def test_unet_caller_takes_the_lean_path_only_when_allowed(tiny_components, monkeypatch):
    calls = []
    real = fast_unet.unet_forward
    monkeypatch.setattr(fast_unet, "unet_forward", lambda *a: calls.append(1) or real(*a))
    c = tiny_components
    z, emb = torch.randn(2, 4, 16, 16), torch.randn(2, 16, 32)
    with torch.inference_mode():
        fast = unet_caller(c)(z, torch.tensor(100), emb)
        assert calls == [1]
        slow = unet_caller(dataclasses.replace(c, fast_unet=False))(z, torch.tensor(100), emb)
        assert calls == [1]  # diffusers' forward
        handle = c.unet.register_forward_pre_hook(lambda *a: None)
        try:
            hooked = unet_caller(c)(z, torch.tensor(100), emb)
        finally:
            handle.remove()
        assert calls == [1]
    assert torch.equal(fast, slow) and torch.equal(fast, hooked)
