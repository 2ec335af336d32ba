"""LEDITS++ (Brack et al., CVPR 2024) through diffusers' own ``LEditsPPPipelineStableDiffusion``.

LEDITS++ inverts the image with edit-friendly DDPM inversion (the noise ``z_t`` of every step is
solved for, so that decoding reproduces the input), then decodes with *semantic guidance*: for
each edit concept ``e_i`` (a few words; "reverse" concepts are pushed away from)

    γ_t^i      = s_e · (ε_θ(z_t, t, c_{e_i}) − ε_θ(z_t, t, ∅))              (its guidance, ± for reverse)
    M¹_t^i     = [ smooth(Σ_{j∈e_i} A_t[·, j]) ≥ q_λ ]                     (cross-attention mask)
    M²_t^i     = [ Σ_channels |γ_t^i| ≥ q_λ ]                               (noise-guidance mask)
    M_t^i      = M¹_t^i · M²_t^i                                            (paper, eq. 12)
    ε̂_t        = ε_θ(z_t, t, ∅) + Σ_i M_t^i · γ_t^i

``q_λ`` is the λ-quantile of the map over the image (``edit_threshold`` λ = 0.9 keeps the top
10 %), so each mask covers a *fixed fraction* of the image whatever the object's size. The
mask is re-estimated at every step; the pipeline keeps them all (``activation_mask``). The
*implicit* mask we expose is the fraction of the steps where a cell was edited by any concept,
cut at 1/2:

    F = (1/|S|) Σ_{t∈S} max_i M_t^i,       M = [F > 1/2]      (``mask_threshold``)

**The cross-attention half does not work with our UNets.** diffusers' ``LeditsAttentionStore``
keeps only cross-attention maps of exactly ``(h/4)·(w/4)`` positions (``h × w`` the latent
grid), taken from the down and up blocks — Stable Diffusion 1.x/2.x have cross-attention at
1/1, 1/2 and 1/4 of the latent grid there. The embedded shapes-world model has cross-attention
at 1/1 and 1/2 only (1/4 is its mid block, which the store skips) and the tiny random test model
at 1/1 only: the store stays empty and the pipeline fails (``torch.cat`` of an empty list) as
soon as ``use_cross_attn_mask`` or ``use_intersect_mask`` (its default) is on.
:func:`ledits_cross_attention_usable` says so from the UNet's layout, and :func:`ledits_pp`
then runs with ``use_cross_attn_mask=False, use_intersect_mask=False``: the **noise-guidance
mask M² alone**. (tests/test_methods.py checks that the pipeline indeed fails with the
intersection on these models.)

diffusers' ``invert`` and ``__call__`` replace the UNet's attention processors
(``AttnProcessor`` everywhere, LEDITS++'s recorders on ``attn2``) and leave them so; since our
``Components`` share that UNet, :func:`ledits_pp` puts the previous processors back afterwards
(the lean UNet path and every other method's numbers depend on them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import check_count, check_positive, check_prompt, check_threshold
from ..latents import load_image
from ..models import Components
from .attention import changed_positions_both
from .common import MethodResult, cut


def _ddim_scheduler(config):
    """A ``DDIMScheduler`` whose ``add_noise`` takes float timesteps: diffusers' LEDITS++ ``invert``
    passes ``torch.Tensor([t])`` (float32), which ``alphas_cumprod[timesteps]`` refuses as an
    index in current torch (IndexError) — the cast to ``long`` is the only change."""
    from diffusers import DDIMScheduler

    class LongTimestepDDIMScheduler(DDIMScheduler):
        def add_noise(self, original_samples, noise, timesteps):
            return super().add_noise(original_samples, noise, timesteps.long())

    return LongTimestepDDIMScheduler.from_config(config)


def ledits_pipeline(c: Components):
    """diffusers' ``LEditsPPPipelineStableDiffusion`` on ``c``'s modules, with a fresh DDIM
    scheduler from ``c``'s config (so the inversion is edit-friendly DDPM; see
    :func:`_ddim_scheduler` for the one fix it needs), progress bars off."""
    from diffusers import LEditsPPPipelineStableDiffusion

    pipe = LEditsPPPipelineStableDiffusion(
        vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet,
        scheduler=_ddim_scheduler(c.scheduler.config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _cross_attention_scales(unet) -> list[int]:
    """Downsampling factors (w.r.t. the latent grid) of the down/up blocks with cross-attention."""
    n = len(unet.down_blocks)
    down = [2 ** i for i, b in enumerate(unet.down_blocks) if getattr(b, "has_cross_attention", False)]
    up = [2 ** (n - 1 - j) for j, b in enumerate(unet.up_blocks) if getattr(b, "has_cross_attention", False)]
    return down + up


def ledits_cross_attention_usable(c: Components, latent_size: tuple[int, int]) -> bool:
    """Whether diffusers' LEDITS++ finds cross-attention maps for a ``latent_size`` = (h, w) grid:
    a down or up block with cross-attention at exactly 1/4 of it (see the module doc)."""
    h, w = latent_size
    return h % 4 == 0 and w % 4 == 0 and 4 in _cross_attention_scales(c.unet)


def check_ledits_input(c: Components, image):
    """The image as PIL if diffusers' LEDITS++ can take it with ``c``, else a clear error."""
    if c.vae.dtype != c.dtype:
        raise ValueError(f"LEDITS++ through diffusers needs the VAE and the UNet in one dtype (here {c.vae.dtype} and "
                         f"{c.dtype}: its invert() feeds the VAE in the text encoder's dtype); load the components "
                         "with dtype='float32'.")
    img = load_image(image)
    if img.width % 32 or img.height % 32:
        raise ValueError(f"LEDITS++ needs image sides that are multiples of 32, got {img.size}; resize the image.")
    return img


@dataclass
class LeditsMask:
    """LEDITS++'s masks: ``per_step`` (T, K, B, h, w) ``M_t^i`` of every step and concept (0/1);
    ``frequency`` (B, h, w) ``F``; ``concepts``/``reverse`` the edit concepts and their
    directions; ``cross_attention``: whether the cross-attention half was used."""

    per_step: torch.Tensor
    frequency: torch.Tensor
    concepts: list
    reverse: list
    cross_attention: bool


def _changed_words(tokenizer, source: str, target: str) -> tuple[str, str]:
    """The target's changed words and the source's (the words the edit adds and removes; one of
    them may be empty — only insertions, only removals — not both)."""
    def words(b, positions):
        ids = tokenizer(b, truncation=True, max_length=tokenizer.model_max_length).input_ids
        return tokenizer.decode([ids[p] for p in positions]).strip()

    added, removed = changed_positions_both(tokenizer, source, target)
    return words(target, added), words(source, removed) if removed else ""


@torch.no_grad()
def ledits_pp(
    c: Components,
    image,
    source: str,
    target: str,
    *,
    concepts: list[str] | None = None,
    reverse: list[bool] | None = None,
    steps: int = 50,
    skip: float = 0.15,
    source_guidance: float = 3.5,
    inversion_prompt: str = "",
    edit_guidance: float = 5.0,
    edit_threshold: float = 0.9,
    warmup: int = 0,
    cross_attention: bool | None = None,
    mask_threshold: float = 0.5,
    seed: int = 0,
    pipe=None,
) -> MethodResult:
    """LEDITS++ edit of one image from ``source`` to ``target``: its own output image, its implicit
    mask (see the module doc) at latent and image resolution.

    ``concepts``/``reverse``: LEDITS++'s editing prompts and directions; default: the target's
    changed words (added) and the source's (removed, ``reverse=True``) — ``"blue" → "green"``
    gives ``["green", "blue"]``, ``[False, True]``; a removal (the target only drops words) gives
    the dropped words alone, reversed. ``steps``, ``skip``, ``source_guidance``,
    ``edit_guidance`` (``s_e``), ``edit_threshold`` (λ), ``warmup``: the pipeline's
    ``num_inversion_steps``, ``skip``, ``source_guidance_scale``, ``edit_guidance_scale``,
    ``edit_threshold``, ``edit_warmup_steps`` (its defaults, except ``steps``).
    ``inversion_prompt``: ``invert``'s ``source_prompt`` (its default ``""``).
    ``cross_attention``: use the cross-attention mask and the intersection (None: when
    :func:`ledits_cross_attention_usable`). ``seed`` seeds the DDPM inversion's noise.
    Needs ``c`` in one dtype (float32 on CUDA too: our VAE stays float32, the pipeline does not
    allow for that).
    """
    check_prompt("target", target, required=True)
    steps = check_count("steps", steps)
    edit_threshold, mask_threshold = check_threshold("edit_threshold", edit_threshold), check_threshold(
        "mask_threshold", mask_threshold)
    edit_guidance = check_positive("edit_guidance", edit_guidance)
    if not 0 <= skip < 1:
        raise ValueError(f"skip must be in [0, 1), got {skip}.")
    if concepts is None:
        added, removed = _changed_words(c.tokenizer, source, target)
        pairs = [(word, rev) for word, rev in ((added, False), (removed, True)) if word]
        concepts, reverse = [w for w, _ in pairs], [r for _, r in pairs]
    reverse = [False] * len(concepts) if reverse is None else list(reverse)
    if not concepts or len(reverse) != len(concepts):
        raise ValueError(f"`concepts` must be a non-empty list and `reverse` as long, got {concepts!r}, {reverse!r}.")
    img = check_ledits_input(c, image)
    f = c.vae_scale_factor
    latent_size = (img.height // f, img.width // f)
    usable = ledits_cross_attention_usable(c, latent_size)
    if cross_attention is None:
        cross_attention = usable
    elif cross_attention and not usable:
        raise ValueError("cross_attention=True: diffusers' LEDITS++ finds no cross-attention map at 1/4 of the latent "
                         "grid in this UNet (see diffedit_lab.methods.ledits); pass cross_attention=None or False.")
    pipe = pipe or ledits_pipeline(c)
    saved = dict(c.unet.attn_processors)
    try:
        g = torch.Generator().manual_seed(int(seed))
        pipe.invert(image=img, source_prompt=inversion_prompt, source_guidance_scale=source_guidance,
                    num_inversion_steps=steps, skip=skip, generator=g)
        out = pipe(editing_prompt=list(concepts), reverse_editing_direction=reverse, edit_guidance_scale=edit_guidance,
                   edit_threshold=edit_threshold, edit_warmup_steps=warmup, use_cross_attn_mask=cross_attention,
                   use_intersect_mask=cross_attention, generator=g, output_type="pil")
        per_step = pipe.activation_mask[:, :, :, 0].float()  # (T, K, B, h, w): channels are copies
    finally:
        c.unet.set_attn_processor(saved)
    frequency = per_step[warmup:].amax(1).mean(0).to(c.device)
    mask, mask_image = cut(frequency, mask_threshold, (img.height, img.width))
    details = dict(ledits=LeditsMask(per_step=per_step, frequency=frequency, concepts=list(concepts),
                                     reverse=list(reverse), cross_attention=bool(cross_attention)))
    images = list(out.images)
    return MethodResult(method="ledits_pp", mask=mask, mask_image=mask_image, image=images[0], images=images,
                        soft=frequency, latents=None, details=details)
