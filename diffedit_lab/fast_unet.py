"""The UNet's forward pass, the same operations without the framework's per-module overhead.

    ε_θ(z_t, t, c) = UNet2DConditionModel(z_t, t, encoder_hidden_states=c)

DiffEdit calls ``ε_θ`` 150–220 times per edit, on small batches (one or two rows per DDIM step).
At that size a call of diffusers' ``UNet2DConditionModel`` is not all arithmetic: on a CPU,
profiling the embedded model shows 15–20 % of a one-row call spent in Python around the
kernels — ``nn.Module.__call__`` for ~300 sub-modules, keyword plumbing, deprecation checks, and
``inspect.signature`` of the attention processor on every attention call.

:func:`unet_forward` walks the same modules and calls the same ``torch`` kernels **in the same
order on the same tensors**, so its output is bit-for-bit diffusers' (``tests/test_fast_unet.py``
checks ``torch.equal`` on several configurations). It covers the Stable Diffusion 1.x/2.x family
(the blocks ``CrossAttnDownBlock2D``/``DownBlock2D``/``UNetMidBlock2DCrossAttn``/``CrossAttnUpBlock2D``/
``UpBlock2D``, ``ResnetBlock2D``, ``Transformer2DModel`` with ``BasicTransformerBlock`` and diffusers'
default ``AttnProcessor2_0``). :func:`usable` says whether a UNet is of that family, in eval mode
and without hooks; :func:`~diffedit_lab.sampling.unet_caller` asks it once per loop of UNet calls
and otherwise uses diffusers' own forward (another UNet, training, LoRA, offloading, a profiler).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------------------------------
# which UNets


def usable(unet) -> bool:
    """True when :func:`unet_forward` computes exactly what ``unet(...)`` computes now: a UNet of
    the supported family, in eval mode, with no hook and no replaced ``forward`` anywhere."""
    from torch.nn.modules import module

    if unet.training or module._global_forward_hooks or module._global_forward_pre_hooks:
        return False
    try:
        return _supported_unet(unet) and all(_supported(m) and not _hooked(m) for m in unet.modules())
    except AttributeError:  # an attribute a future diffusers renamed: stay on diffusers' forward
        return False


def _hooked(m: nn.Module) -> bool:
    """Forward hooks, or a ``forward`` replaced on the instance (accelerate's offloading does that)."""
    return bool(m._forward_hooks or m._forward_pre_hooks) or "forward" in m.__dict__


@functools.cache
def _diffusers():
    from diffusers import UNet2DConditionModel
    from diffusers.models import activations, attention, attention_processor, downsampling, resnet, upsampling
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
    from diffusers.models.unets import unet_2d_blocks as blocks

    return SimpleNamespace(
        UNet=UNet2DConditionModel, GEGLU=activations.GEGLU, GELU=activations.GELU,
        Block=attention.BasicTransformerBlock, FeedForward=attention.FeedForward,
        Attention=attention_processor.Attention, AttnProcessor2_0=attention_processor.AttnProcessor2_0,
        Downsample2D=downsampling.Downsample2D, Upsample2D=upsampling.Upsample2D, Resnet=resnet.ResnetBlock2D,
        Transformer2DModel=Transformer2DModel, blocks=blocks,
        block_types=(blocks.CrossAttnDownBlock2D, blocks.DownBlock2D, blocks.UNetMidBlock2DCrossAttn,
                     blocks.CrossAttnUpBlock2D, blocks.UpBlock2D),
    )


def _supported_unet(unet) -> bool:
    cfg = unet.config
    return (
        type(unet) is _diffusers().UNet
        and cfg.class_embed_type is None and cfg.addition_embed_type is None and cfg.encoder_hid_dim is None
        and cfg.time_cond_proj_dim is None and cfg.time_embedding_type == "positional"
        and not cfg.center_input_sample and unet.time_embed_act is None and unet.class_embedding is None
        and unet.time_embedding.cond_proj is None and unet.time_embedding.post_act is None
        and type(unet.time_embedding.act) is nn.SiLU and type(unet.conv_act) is nn.SiLU
        and unet.conv_norm_out is not None and unet.mid_block is not None
    )


def _supported(m: nn.Module) -> bool:
    """``m`` is a module :func:`unet_forward` reproduces exactly, or one it never calls."""
    d = _diffusers()
    kind = type(m)
    if m.__class__.__module__ == d.blocks.__name__:  # the UNet's blocks
        return kind in d.block_types and getattr(m, "s1", None) is None  # FreeU off
    if kind is d.Resnet:
        return (m.upsample is None and m.downsample is None and m.time_embedding_norm == "default"
                and m.output_scale_factor == 1.0 and not m.skip_time_act and type(m.nonlinearity) is nn.SiLU
                and m.time_emb_proj is not None)
    if kind is d.Transformer2DModel:
        return m.is_input_continuous and all(type(b) is d.Block for b in m.transformer_blocks)
    if kind is d.Block:
        return (m.norm_type == "layer_norm" and m.pos_embed is None and not m.only_cross_attention
                and m._chunk_size is None and m.attn2 is not None and not hasattr(m, "fuser"))
    if kind is d.Attention:
        return (type(m.processor) is d.AttnProcessor2_0 and m.spatial_norm is None and m.group_norm is None
                and m.norm_cross is None and m.norm_q is None and m.norm_k is None and not m.residual_connection
                and m.rescale_output_factor == 1.0 and not getattr(m, "fused_projections", False))
    if kind is d.FeedForward:
        return type(m.net[0]) in (d.GEGLU, d.GELU) and len(m.net) == 3 and type(m.net[2]) is nn.Linear
    if kind is d.Downsample2D:
        return m.use_conv and m.padding != 0 and m.norm is None
    if kind is d.Upsample2D:
        return m.use_conv and m.interpolate and not m.use_conv_transpose and m.norm is None and m.name == "conv"
    if kind is nn.Conv2d:
        return m.padding_mode == "zeros"
    return kind in _LEAVES or kind in (d.UNet, d.GEGLU, d.GELU) or m.__class__.__module__.startswith(
        ("diffusers.models.embeddings", "torch.nn.modules.container"))


_LEAVES = (nn.Linear, nn.GroupNorm, nn.LayerNorm, nn.SiLU, nn.Dropout, nn.Identity)


# ------------------------------------------------------------------------------------------
# the forward pass


def unet_forward(unet, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
    """``unet(sample, timestep, encoder_hidden_states=…).sample``, bit for bit, for a UNet that is
    :func:`usable`."""
    emb = _time_embedding(unet, sample, timestep)
    ctx = encoder_hidden_states
    upsample_size = None
    forward_upsample_size = any(s % 2**unet.num_upsamplers != 0 for s in sample.shape[-2:])
    h = _conv(unet.conv_in, sample)
    skips = [h]
    for block in unet.down_blocks:
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for resnet, attn in zip(block.resnets, attentions):
            h = _resnet(resnet, h, emb)
            h = h if attn is None else _transformer(attn, h, ctx)
            skips.append(h)
        for down in block.downsamplers or ():
            h = _conv(down.conv, h)
            skips.append(h)
    mid = unet.mid_block
    h = _resnet(mid.resnets[0], h, emb)
    for attn, resnet in zip(mid.attentions, mid.resnets[1:]):
        h = _resnet(resnet, _transformer(attn, h, ctx), emb)
    for i, block in enumerate(unet.up_blocks):
        res, skips = skips[-len(block.resnets):], skips[: -len(block.resnets)]
        if i < len(unet.up_blocks) - 1 and forward_upsample_size:
            upsample_size = skips[-1].shape[2:]
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for resnet, attn in zip(block.resnets, attentions):
            h = _resnet(resnet, torch.cat([h, res.pop()], dim=1), emb)
            h = h if attn is None else _transformer(attn, h, ctx)
        for up in block.upsamplers or ():
            h = _upsample(up, h, upsample_size)
    h = F.silu(_group_norm(unet.conv_norm_out, h))
    return _conv(unet.conv_out, h)


def _time_embedding(unet, sample: torch.Tensor, timestep) -> torch.Tensor:
    """The sinusoidal embedding of ``t`` through the time MLP (diffusers' ``get_time_embed``)."""
    t_emb = unet.get_time_embed(sample=sample, timestep=timestep)
    mlp = unet.time_embedding
    return _linear(mlp.linear_2, F.silu(_linear(mlp.linear_1, t_emb)))


def _resnet(r, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """``x + conv2(silu(norm2(conv1(silu(norm1(x))) + proj(silu(emb)))))`` (``ResnetBlock2D``)."""
    h = _conv(r.conv1, F.silu(_group_norm(r.norm1, x)))
    h = h + _linear(r.time_emb_proj, F.silu(emb))[:, :, None, None]
    h = _conv(r.conv2, F.silu(_group_norm(r.norm2, h)))
    if r.conv_shortcut is not None:
        x = _conv(r.conv_shortcut, x)
    return x + h


def _transformer(t, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """``Transformer2DModel`` on a feature map: norm, project in, the blocks, project out, + x."""
    batch, _, height, width = x.shape
    h = _group_norm(t.norm, x)
    if not t.use_linear_projection:
        h = _conv(t.proj_in, h)
        inner = h.shape[1]
        h = h.permute(0, 2, 3, 1).reshape(batch, height * width, inner)
    else:
        inner = h.shape[1]
        h = _linear(t.proj_in, h.permute(0, 2, 3, 1).reshape(batch, height * width, inner))
    for block in t.transformer_blocks:
        h = _attention(block.attn1, _layer_norm(block.norm1, h), None) + h
        h = _attention(block.attn2, _layer_norm(block.norm2, h), ctx) + h
        h = _feed_forward(block.ff, _layer_norm(block.norm3, h)) + h
    if not t.use_linear_projection:
        h = _conv(t.proj_out, h.reshape(batch, height, width, inner).permute(0, 3, 1, 2).contiguous())
    else:
        h = _linear(t.proj_out, h).reshape(batch, height, width, inner).permute(0, 3, 1, 2).contiguous()
    return h + x


def _attention(a, x: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor:
    """``softmax(Q Kᵀ/√d) V`` per head, Q from ``x``, K and V from ``ctx`` (``x`` itself if None)."""
    batch = x.shape[0]
    ctx = x if ctx is None else ctx
    q, k, v = _linear(a.to_q, x), _linear(a.to_k, ctx), _linear(a.to_v, ctx)
    d = k.shape[-1] // a.heads
    q, k, v = (y.view(batch, -1, a.heads, d).transpose(1, 2) for y in (q, k, v))
    h = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)
    h = h.transpose(1, 2).reshape(batch, -1, a.heads * d).to(q.dtype)
    return _linear(a.to_out[0], h)


def _feed_forward(ff, x: torch.Tensor) -> torch.Tensor:
    """``W₂ · (a ⊙ gelu(g))`` with ``[a, g] = W₁ x`` (GEGLU), or ``W₂ · gelu(W₁ x)`` (GELU)."""
    act = ff.net[0]
    h = _linear(act.proj, x)
    if hasattr(act, "approximate"):  # GELU
        h = F.gelu(h, approximate=act.approximate)
    else:  # GEGLU
        h, gate = h.chunk(2, dim=-1)
        h = h * F.gelu(gate)
    return _linear(ff.net[2], h)


def _upsample(up, x: torch.Tensor, size) -> torch.Tensor:
    """Nearest ×2 (or to ``size``), then a 3×3 convolution (``Upsample2D``)."""
    scale = 2 if size is None else max(f / s for f, s in zip(size, x.shape[-2:]))
    if x.shape[0] >= 64 or x.numel() * scale > 2**31:
        x = x.contiguous()  # diffusers' guards for large tensors, kept so that the layout is the same
    if size is None:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
    else:
        x = F.interpolate(x, size=size, mode="nearest")
    return _conv(up.conv, x)


def _conv(m: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


def _linear(m: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, m.weight, m.bias)


def _group_norm(m: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    return F.group_norm(x, m.num_groups, m.weight, m.bias, m.eps)


def _layer_norm(m: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)
