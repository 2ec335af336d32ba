"""DiffEdit's successors, over the same :class:`~diffedit_lab.Components`.

DiffEdit finds *where* to edit by contrasting two noise predictions. Later methods find it
otherwise, and every one of them is here as a function returning a :class:`MethodResult`
(its mask at latent and at image resolution, its soft map, and its edited image):

* :func:`diffedit` — DiffEdit itself (:func:`~diffedit_lab.edit`), for comparison;
* :func:`cross_attention` — the cross-attention of the query's *changed words*, averaged over
  layers and steps and thresholded (Prompt-to-Prompt's "local blend" idea), recorded by an
  attention processor of our own (:mod:`.attention`);
* :func:`intersection` — DiffEdit's mask ∩ the attention mask;
* :func:`ledits_pp` — LEDITS++ through diffusers' own ``LEditsPPPipelineStableDiffusion``,
  its implicit mask exposed (:mod:`.ledits`).

Every mask can also drive DiffEdit's own decoding (:func:`edit_with_mask`: ``ddim_invert`` then
``masked_denoise``), so that the *masks* are compared on equal terms, whatever each method
would otherwise do after finding its mask.

The core modules never import this package.
"""

from .attention import (
    AttentionMask,
    CrossAttentionRecorder,
    changed_token_positions,
    cross_attention_mask,
    record_cross_attention,
)
from .common import MethodResult, edit_with_mask, intersect_masks
from .ledits import LeditsMask, ledits_cross_attention_usable, ledits_pipeline, ledits_pp
from .run import METHODS, cross_attention, diffedit, intersection, run_methods

__all__ = [
    "METHODS",
    "AttentionMask",
    "CrossAttentionRecorder",
    "LeditsMask",
    "MethodResult",
    "changed_token_positions",
    "cross_attention",
    "cross_attention_mask",
    "diffedit",
    "edit_with_mask",
    "intersect_masks",
    "intersection",
    "ledits_cross_attention_usable",
    "ledits_pipeline",
    "ledits_pp",
    "record_cross_attention",
    "run_methods",
]
