"""A mask from cross-attention: where the UNet looks at the words that change.

In every cross-attention layer ``ℓ`` the image positions ``p`` (queries) attend to the text
tokens ``j`` (keys) of the query ``Q``:

    a^ℓ_t[p, j] = softmax_j( q_p · k_j / √d )          (one map per head; heads averaged)

Prompt-to-Prompt's "local blend" (Hertz et al., 2022) takes the edit region from these maps for
the **changed words**: the token positions ``J_Q`` where the tokens of ``Q`` differ from those of
the reference ``R`` (a diff of the two token sequences), read under ``Q``, and — as P2P does with
the words of both prompts — the positions ``J_R`` of the words of ``R`` that ``Q`` replaces or
drops, read under ``R`` (none when ``R`` is empty or only gains words; a removal, where ``Q`` only
drops words, has ``J_R`` alone and ``Ã = Ã_R``):

    A_X[p] = (1/|S|) Σ_{t∈S} (1/L) Σ_ℓ up_ℓ( Σ_{j∈J_X} a^ℓ_t[·, j] )[p]     (X = Q, R; layers, steps averaged)
    Ã_X    = (A_X − min A_X) / (max A_X − min A_X)                         (min–max, per image)
    Ã      = max(Ã_Q, Ã_R)                                                 (``normalized``)
    M      = [Ã > τ]                                                        (τ = 1/2)

``up_ℓ`` upsamples layer ``ℓ``'s map bilinearly to the latent grid (the layers work at 1/1,
1/2, 1/4… of it). The steps ``S``: the latents of DiffEdit's own DDIM encoding
``z_{t_1} … z_{t_r}`` (:func:`~diffedit_lab.ddim_invert`, unconditional), each passed once
through the UNet conditioned on ``Q`` (and once on ``R``) — the very latents the decoding
starts from; no guidance, no noise draws, so the mask is deterministic.

**Differences from P2P.** P2P divides by the maximum only and cuts at 0.3, with Stable
Diffusion's sharply peaked maps. The small shapes-world model's maps are flat (every cell
gets 50–100 % of the maximum), so that rule keeps the whole image; min–max scaling makes
``τ`` select the most-attended half of the range instead. P2P also max-pools the maps 3×3
before upsampling; we do not.

The maps are recorded by :class:`CrossAttentionRecorder`, an attention processor installed on
the ``attn2`` (cross-attention) layers only by :func:`record_cross_attention` and removed on
exit. It calls the processor it replaces for the layer's output — so the UNet's predictions
are unchanged — and computes ``softmax(q·kᵀ/√d)`` once more on the side. While it is
installed, :func:`~diffedit_lab.fast_unet.usable` says no (the lean UNet path only accepts
diffusers' ``AttnProcessor2_0``), so every UNet call goes through diffusers' forward, which
calls the processors.
"""

from __future__ import annotations

import difflib
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checks import check_prompt, check_threshold
from ..inversion import Inversion, ddim_invert
from ..latents import encode_prompt
from ..models import Components
from ..sampling import progress_bar, unet_output
from .common import cut

ATTENTION_THRESHOLD = 0.5
"""``τ`` on the min–max scaled attention map (P2P's LocalBlend: 0.3 on the max-scaled map)."""


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, truncation=True, max_length=tokenizer.model_max_length).input_ids


def changed_token_positions(tokenizer, source: str, target: str) -> list[int]:
    """Positions (in the target's token sequence, BOS = 0) of the target's tokens that are not
    matched in the source's: the ``replace`` and ``insert`` spans of a diff of the two id lists.

    ``"a red circle and a blue square" → "a red circle and a green square"`` gives the position
    of ``green``. Raises if no token of the target changed (nothing to localise).
    """
    _check_texts(source, target)
    positions = _diff_positions(tokenizer, source, target)
    if not positions:
        raise ValueError(f"target {target!r} has no word that is not in source {source!r}: the cross-attention "
                         "mask needs a changed word; change a word of the target.")
    return positions


def _check_texts(source, target) -> None:
    check_prompt("source", source)
    check_prompt("target", target, required=True)
    if not isinstance(source, str) or not isinstance(target, str):
        raise TypeError("the cross-attention mask needs the source and target as texts (not embeddings).")


def _diff_positions(tokenizer, a: str, b: str) -> list[int]:
    """Positions in ``b``'s tokens of the ``replace`` and ``insert`` spans of a diff from ``a`` (may be empty)."""
    ids_a, ids_b = _ids(tokenizer, a), _ids(tokenizer, b)
    return [j for tag, _, _, j1, j2 in difflib.SequenceMatcher(None, ids_a, ids_b, autojunk=False).get_opcodes()
            if tag in ("replace", "insert") for j in range(j1, j2)]


def changed_positions_both(tokenizer, source: str, target: str) -> tuple[list[int], list[int]]:
    """``(J_Q, J_R)``: the target's tokens that are new (replacing or added) and the source's tokens
    that the target replaces or drops (none when ``source`` is empty). One of them may be empty
    — a removal (``"a red circle and a blue star" → "a blue star"``) has only ``J_R`` — but not
    both: raises when no word changed."""
    _check_texts(source, target)
    positions = _diff_positions(tokenizer, source, target)
    source_positions = _diff_positions(tokenizer, target, source) if source else []
    if not positions and not source_positions:
        if tokenizer(source).input_ids != tokenizer(target).input_ids:
            raise ValueError(f"target {target!r} and source {source!r} differ only after the text encoder's first "
                             f"{tokenizer.model_max_length} tokens, which it does not read: shorten the texts.")
        raise ValueError(f"target {target!r} and source {source!r} have the same words: the cross-attention mask "
                         "needs a changed word; change, add or remove a word of the target.")
    return positions, source_positions


class CrossAttentionStore:
    """The recorded maps: ``steps[s][ℓ]`` (B, HW_ℓ) — ``Σ_{j∈J} a^ℓ[·, j]``, heads averaged — for
    step ``s`` and cross-attention call ``ℓ`` in the order the UNet makes them."""

    def __init__(self, positions: list[int]):
        self.positions = list(positions)
        self.steps: list[list[torch.Tensor]] = [[]]

    def add(self, probs: torch.Tensor) -> None:
        self.steps[-1].append(probs)

    def next_step(self) -> None:
        self.steps.append([])

    def recorded(self) -> list[list[torch.Tensor]]:
        return [s for s in self.steps if s]


class CrossAttentionRecorder:
    """Attention processor for a cross-attention layer: returns what ``inner`` (the processor it
    replaces) returns, and records ``Σ_{j∈J} softmax(q·kᵀ/√d)[:, :, j]`` averaged over heads."""

    def __init__(self, store: CrossAttentionStore, inner):
        self.store, self.inner = store, inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        if encoder_hidden_states is not None:  # cross-attention (attn2): record
            with torch.no_grad():
                hs = hidden_states if hidden_states.ndim == 3 else hidden_states.flatten(2).transpose(1, 2)
                ctx = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
                q, k = attn.head_to_batch_dim(attn.to_q(hs)), attn.head_to_batch_dim(attn.to_k(ctx))
                probs = attn.get_attention_scores(q.float(), k.float(), None)  # (B·heads, HW, L)
                batch = hs.shape[0]
                probs = probs.view(batch, attn.heads, *probs.shape[1:]).mean(1)
                self.store.add(probs[..., self.store.positions].sum(-1).float())
        return out


@contextmanager
def record_cross_attention(unet, positions: list[int]):
    """Install :class:`CrossAttentionRecorder` on every ``attn2`` layer of ``unet``, yield the
    :class:`CrossAttentionStore`, and put the previous processors back on exit (even on error)."""
    saved = dict(unet.attn_processors)
    store = CrossAttentionStore(positions)
    recorders = {name: CrossAttentionRecorder(store, p) if name.endswith("attn2.processor") else p
                 for name, p in saved.items()}
    if not any(isinstance(p, CrossAttentionRecorder) for p in recorders.values()):
        raise ValueError("this UNet has no cross-attention layer (attn2): no cross-attention mask can be recorded.")
    unet.set_attn_processor(recorders)
    try:
        yield store
    finally:
        unet.set_attn_processor(saved)


@dataclass
class AttentionMask:
    """The cross-attention mask of a batch of ``B`` images.

    ``attention``: (B, h, w) ``A_Q`` (layers and steps averaged; None when the target only drops
    words); ``source_attention``: ``A_R`` (None without replaced or dropped source words);
    ``normalized``: ``Ã``; ``mask``: (B, h, w) ``[Ã > τ]``; ``mask_image``: (B, H, W)
    ``[up(Ã) > τ]``; ``per_layer``: (X, L, B, h, w) each layer's map averaged over steps, on the
    latent grid, for Q and/or R (in that order); ``layer_sizes``:
    (h_ℓ, w_ℓ) of each layer; ``positions``/``words`` and ``source_positions``/``source_words``:
    the changed tokens; ``inversion``: the DDIM encoding whose latents were attended over
    (reusable for the decoding).
    """

    attention: torch.Tensor | None
    source_attention: torch.Tensor | None
    normalized: torch.Tensor
    mask: torch.Tensor
    mask_image: torch.Tensor
    per_layer: torch.Tensor
    layer_sizes: list
    positions: list
    words: list
    source_positions: list
    source_words: list
    threshold: float
    inversion: Inversion

    def rethreshold(self, threshold: float) -> "AttentionMask":
        """The same maps cut at another ``τ`` (no model call)."""
        from dataclasses import replace

        mask, mask_image = cut(self.normalized, threshold, tuple(self.mask_image.shape[-2:]))
        return replace(self, mask=mask, mask_image=mask_image, threshold=float(threshold))


def _layer_grid(hw: int, h: int, w: int) -> tuple[int, int]:
    f = math.sqrt(h * w / hw)
    hl, wl = round(h / f), round(w / f)
    if hl * wl != hw:
        raise ValueError(f"cannot place an attention map of {hw} positions on a {h}×{w} latent grid.")
    return hl, wl


def _record(c: Components, inversion: Inversion, text: str, positions: list[int], progress: bool):
    """``A_X`` (B, h, w) and per layer (L, B, h, w), and the layers' grids, for ``text`` = X."""
    emb = encode_prompt(c, text)
    _, batch, _, h, w = inversion.trajectory.shape
    with record_cross_attention(c.unet, positions) as store:
        for k, t in enumerate(progress_bar(inversion.timesteps, progress, "cross-attention")):
            # trajectory[k + 1] is at the noise level of timesteps[k]
            unet_output(c, inversion.trajectory[k + 1], t, emb.expand(batch, -1, -1))
            store.next_step()
    recorded = store.recorded()
    if not recorded:
        raise RuntimeError("no cross-attention map was recorded: the UNet did not call its attention processors.")
    sizes = [_layer_grid(m.shape[1], h, w) for m in recorded[0]]
    per_layer = torch.stack([
        torch.stack([F.interpolate(m.view(batch, 1, *size), size=(h, w), mode="bilinear", align_corners=False)[:, 0]
                     for m, size in zip(step, sizes)])
        for step in recorded
    ]).mean(0)  # (L, B, h, w)
    return per_layer.mean(0), per_layer, sizes


def _minmax(a: torch.Tensor) -> torch.Tensor:
    lo, hi = a.flatten(1).amin(1).view(-1, 1, 1), a.flatten(1).amax(1).view(-1, 1, 1)
    return (a - lo) / (hi - lo).clamp(min=1e-12)


def _words(tokenizer, text: str, positions: list[int]) -> list[str]:
    ids = _ids(tokenizer, text)
    return [tokenizer.decode([ids[p]]).strip() for p in positions]


@torch.inference_mode()
def cross_attention_mask(
    c: Components,
    image_or_inversion,
    source: str,
    target: str,
    *,
    encoding_ratio: float | None = None,
    steps: int | None = None,
    threshold: float = ATTENTION_THRESHOLD,
    progress: bool = False,
) -> AttentionMask:
    """The cross-attention mask of the changed words (see the module doc).

    ``image_or_inversion``: an :class:`~diffedit_lab.Inversion` (its latents are used as they
    are) or image(s)/latents, DDIM-encoded unconditionally to ``encoding_ratio`` in ``steps``
    (``None``: the paper's, as :func:`~diffedit_lab.ddim_invert`).
    ``threshold``: ``τ`` on the min–max scaled map.
    """
    threshold = check_threshold("threshold", threshold)
    positions, source_positions = changed_positions_both(c.tokenizer, source, target)
    if isinstance(image_or_inversion, Inversion):
        inversion = image_or_inversion
    else:
        inversion = ddim_invert(c, image_or_inversion, encoding_ratio=encoding_ratio, steps=steps, progress=progress)
    attention = source_attention = None
    maps, layers = [], []
    if positions:  # A_Q: the target's new words, read under Q
        attention, target_layers, sizes = _record(c, inversion, target, positions, progress)
        maps.append(_minmax(attention))
        layers.append(target_layers)
    if source_positions:  # A_R: the source's words that Q replaces or drops, read under R
        source_attention, source_layers, sizes = _record(c, inversion, source, source_positions, progress)
        maps.append(_minmax(source_attention))
        layers.append(source_layers)
    normalized = maps[0] if len(maps) == 1 else torch.maximum(maps[0], maps[1])
    per_layer = torch.stack(layers)
    h, w = normalized.shape[-2:]
    mask, mask_image = cut(normalized, threshold, (h * c.vae_scale_factor, w * c.vae_scale_factor))
    return AttentionMask(attention=attention, source_attention=source_attention, normalized=normalized, mask=mask,
                         mask_image=mask_image, per_layer=per_layer, layer_sizes=sizes, positions=positions,
                         words=_words(c.tokenizer, target, positions) if positions else [],
                         source_positions=source_positions,
                         source_words=_words(c.tokenizer, source, source_positions) if source_positions else [],
                         threshold=threshold, inversion=inversion)
