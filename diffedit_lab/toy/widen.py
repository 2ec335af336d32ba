"""Give a trained toy model more latent channels without changing what it computes.

A VAE with ``c`` latent channels encodes each ``f×f`` pixel block into ``c`` numbers; on the rich
world's textured backgrounds 4 channels at factor 4 are too few for small objects (a small star
comes back as a blob). Retraining from scratch costs hours of CPU, so the trained networks are
*widened*: every new weight is chosen so that the wider network computes exactly what the old
one did, and training then teaches it to use the new channels.

VAE (``c → C`` latent channels). The encoder's last convolution predicts ``[μ, log σ²]``
(``2c`` maps), ``quant_conv`` mixes them, the decoder reads ``post_quant_conv(z)``:

* ``encoder.conv_out``: the old ``μ`` and ``log σ²`` maps keep their weights, now at channels
  ``0…c−1`` and ``C…C+c−1``; the new ones start small and random (new log-variances at the old
  mean bias);
* ``quant_conv`` and ``post_quant_conv``: the old matrices on the old channels, the identity on
  the new ones;
* ``decoder.conv_in``: zero weights from the new channels, so ``D(z)`` ignores them::

      D_C([z_old, z_new]) = D_c(z_old)

UNet (``c → C`` channels in and out): ``conv_in`` reads the new channels with zero weights;
``conv_out``'s new output channels start at zero (a prediction ε̂ = 0 there, whose loss teaches
them); the old ``ε̂`` is unchanged.
"""

from __future__ import annotations

import torch


def _config(model) -> dict:
    return {k: v for k, v in dict(model.config).items() if not k.startswith("_")}


def _copy_matching(old, new) -> dict:
    """``new``'s state dict with every tensor of the same name and shape taken from ``old``."""
    sd_old, sd = old.state_dict(), new.state_dict()
    return {k: (sd_old[k].clone() if k in sd_old and sd_old[k].shape == v.shape else v) for k, v in sd.items()}


@torch.no_grad()
def widen_vae(old, channels: int, seed: int = 0):
    """A copy of diffusers ``AutoencoderKL`` ``old`` with ``channels`` latent channels that
    encodes the old latents in its first channels and decodes exactly as ``old`` does."""
    from diffusers import AutoencoderKL

    c, C = old.config.latent_channels, channels
    if C < c:
        raise ValueError(f"channels={C} is fewer than the VAE's {c}: widening only adds channels")
    new = AutoencoderKL(**{**_config(old), "latent_channels": C})
    sd, sd_old = _copy_matching(old, new), old.state_dict()
    index = [i if i < c else i + (C - c) for i in range(2 * c)]  # old [μ, log σ²] channel → new
    g = torch.Generator().manual_seed(seed)

    w, b = sd_old["encoder.conv_out.weight"], sd_old["encoder.conv_out.bias"]
    sd["encoder.conv_out.weight"] = torch.randn(sd["encoder.conv_out.weight"].shape, generator=g) * 0.1 * w.std()
    sd["encoder.conv_out.bias"] = torch.zeros(2 * C)
    sd["encoder.conv_out.bias"][C + c:] = b[c:].mean()  # new log-variances start like the old ones
    sd["encoder.conv_out.weight"][index], sd["encoder.conv_out.bias"][index] = w, b

    q, qb = sd_old["quant_conv.weight"], sd_old["quant_conv.bias"]
    sd["quant_conv.weight"] = torch.eye(2 * C)[:, :, None, None].clone()
    sd["quant_conv.bias"] = torch.zeros(2 * C)
    for o_old, o in enumerate(index):
        sd["quant_conv.bias"][o] = qb[o_old]
        sd["quant_conv.weight"][o, :] = 0
        sd["quant_conv.weight"][o, index] = q[o_old, :]

    p, pb = sd_old["post_quant_conv.weight"], sd_old["post_quant_conv.bias"]
    sd["post_quant_conv.weight"] = torch.eye(C)[:, :, None, None].clone()
    sd["post_quant_conv.weight"][:c, :c] = p
    sd["post_quant_conv.bias"] = torch.cat([pb, torch.zeros(C - c)])

    w = sd_old["decoder.conv_in.weight"]
    sd["decoder.conv_in.weight"] = torch.cat([w, torch.zeros(w.shape[0], C - c, *w.shape[2:])], 1)
    new.load_state_dict(sd)
    return new


@torch.no_grad()
def widen_unet(old, channels: int):
    """A copy of diffusers ``UNet2DConditionModel`` ``old`` with ``channels`` input and output
    channels: the old channels' prediction unchanged, the new ones predicted as 0."""
    from diffusers import UNet2DConditionModel

    c, C = old.config.in_channels, channels
    if C < c or old.config.out_channels != c:
        raise ValueError(f"channels={C}: widening needs at least the UNet's {c} channels (in = out)")
    new = UNet2DConditionModel(**{**_config(old), "in_channels": C, "out_channels": C})
    sd, sd_old = _copy_matching(old, new), old.state_dict()
    w = sd_old["conv_in.weight"]
    sd["conv_in.weight"] = torch.cat([w, torch.zeros(w.shape[0], C - c, *w.shape[2:])], 1)
    w, b = sd_old["conv_out.weight"], sd_old["conv_out.bias"]
    sd["conv_out.weight"] = torch.cat([w, torch.zeros(C - c, *w.shape[1:])], 0)
    sd["conv_out.bias"] = torch.cat([b, torch.zeros(C - c)])
    new.load_state_dict(sd)
    return new
