"""PIE-Bench's format (Ju et al. 2023, "Direct Inversion", cure-lab/PnPInversion): its
``mapping_file.json``, its run-length-encoded masks, and its metrics on the unedited region.

A folder ``DIR`` laid out as PIE-Bench is::

    DIR/mapping_file.json            id → {image_path, original_prompt, editing_prompt,
                                           editing_type_id, mask, …}
    DIR/annotation_images/<image_path>

``editing_prompt`` has the changed words in ``[...]``; ``mask`` is a flat list
``[start₀, length₀, start₁, length₁, …]`` of runs of ones over the row-major flattened image
(PIE-Bench's ``evaluation/evaluate.py``, ``mask_decode``: each run sets
``flat[start : start + length] = 1``, clipped at the end). Their decoder then sets the four
border rows/columns to 1 "to avoid annotation errors in boundary" (``border=True`` here, the
default for a real PIE-Bench mapping file); our own export (``toy/export_bench.py``) records
``"mask_border": false`` so that its masks decode exactly.

Metrics (their ``evaluation/matrics_calculator.py``), images in [0, 1], both multiplied by the
unedited region ``U = 1 − mask`` and then compared over the *whole* image:
``MSE = mean((U·x − U·y)²)``, ``PSNR = 10 log₁₀(1 / MSE)`` (capped at 100 dB as elsewhere in the
bench), ``SSIM`` the Gaussian SSIM (σ = 1.5, 11 taps; :func:`~diffedit_lab.metrics.ssim_map`,
windows renormalised at the border where torchmetrics crops it — torchmetrics is not a
dependency). Learned metrics (:func:`learned_metrics`), each only when its weights are already on
the machine, else the report says which file is missing and where it was looked for; nothing is
downloaded:

* the CLIP score (:class:`ClipScore`) when the CLIP model is in the local Hugging Face cache or a
  folder;
* LPIPS on the unedited region (:func:`lpips_unedited`, ``lpips_unedited`` in the rows): their
  ``calculate_lpips(src, tgt, 1 − mask, 1 − mask)``, i.e. both images in [0, 1] (float32)
  multiplied by ``U`` and mapped to [−1, 1] (``2x − 1``), then torchmetrics'
  ``LearnedPerceptualImagePatchSimilarity(net_type="squeeze")`` over the whole image — here
  :class:`~diffedit_lab.bench.lpips.LPIPS` (the same network, our code) with torchvision's
  cached SqueezeNet 1.1 file and LPIPS's linear layers from an installed ``lpips``/torchmetrics
  or ``--lpips-weights FILE`` (:func:`~diffedit_lab.bench.lpips.find_weights`). NaN when the
  unedited region is empty (their ``"nan"``).
"""

from __future__ import annotations

import difflib
import functools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

PSNR_CAP = 100.0
EDIT_TYPES = {
    "0": "random", "1": "change object", "2": "add object", "3": "delete object",
    "4": "change attribute (content)", "5": "change attribute (pose)", "6": "change attribute (color)",
    "7": "change attribute (material)", "8": "change background", "9": "change style",
}
"""PIE-Bench's ``editing_type_id`` → edit type (their paper's ten categories)."""


# --------------------------------------------------------------------------- masks


def mask_encode(mask) -> list[int]:
    """PIE-Bench's run-length encoding of a 2-D binary mask: ``[start, length, …]`` of the runs
    of ones of the row-major flattened mask (at the mask's own size)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}.")
    flat = np.concatenate([[0], m.reshape(-1).astype(bool).astype(np.int8), [0]])
    d = np.diff(flat)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [int(v) for pair in zip(starts, ends - starts) for v in pair]


def mask_decode(encoded, shape=(512, 512), *, border: bool = True) -> np.ndarray:
    """The binary mask (H, W) bool of PIE-Bench's encoding, as their ``mask_decode`` makes it
    (runs clipped at the end; ``border``: the outer rows and columns set, as they do)."""
    h, w = int(shape[0]), int(shape[1])
    enc = list(encoded)
    if len(enc) % 2:
        raise ValueError(f"a PIE-Bench mask is pairs [start, length, …]; got an odd count ({len(enc)}).")
    flat = np.zeros(h * w, bool)
    for start, length in zip(enc[::2], enc[1::2]):
        if start < 0 or length < 0 or start >= h * w:
            raise ValueError(f"mask run ({start}, {length}) is outside a {h}×{w} image.")
        flat[start:start + length] = True
    m = flat.reshape(h, w)
    if border:
        m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = True
    return m


# --------------------------------------------------------------------------- prompts


def bracket_changes(source: str, target: str) -> tuple[str, str]:
    """``(original_prompt, editing_prompt)`` with the words that differ in ``[...]`` (PIE-Bench's
    convention), by a word-level diff: ``"a red circle", "a blue circle"`` →
    ``("a [red] circle", "a [blue] circle")``."""
    a, b = source.split(), target.split()
    out_a, out_b = [], []
    for op, i0, i1, j0, j1 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out_a += a[i0:i1]
            out_b += b[j0:j1]
            continue
        if i1 > i0:
            out_a.append("[" + " ".join(a[i0:i1]) + "]")
        if j1 > j0:
            out_b.append("[" + " ".join(b[j0:j1]) + "]")
    return " ".join(out_a), " ".join(out_b)


def plain(prompt: str) -> str:
    """A PIE-Bench prompt without its brackets (as their evaluation reads it)."""
    return prompt.replace("[", "").replace("]", "")


# --------------------------------------------------------------------------- the folder


@dataclass
class DatasetEdit:
    """One edit read from a PIE-Bench folder. ``scene.image``/``mask``/``source``/``target``/
    ``kind`` as the shapes world's :class:`~diffedit_lab.toy.world.Edit` has them (the bench
    reads both); ``edit``: the shapes-world edit itself when the file says which (then the
    pixel checker scores success), else None."""

    id: str
    scene: SimpleNamespace  # .image: (H, W, 3) uint8
    source: str
    target: str
    mask: np.ndarray  # (H, W) bool, the edited region
    kind: str
    edit: object = None


def read_dataset(folder: str | Path) -> list:
    """The edits of a PIE-Bench folder, in the mapping file's order. An entry with a
    ``shapes_world`` key (written by ``toy/export_bench.py``) is returned as the shapes world's
    own :class:`~diffedit_lab.toy.world.Edit`, rebuilt from its seed and checked against the
    file's image and mask (so the pixel checker can score it); any other as a
    :class:`DatasetEdit`."""
    from PIL import Image

    folder = Path(folder)
    mapping = folder / "mapping_file.json"
    if not mapping.is_file():
        raise FileNotFoundError(f"{mapping} not found: --dataset takes a folder laid out as PIE-Bench "
                                "(mapping_file.json and annotation_images/); make one with "
                                "`python -m diffedit_lab.toy.export_bench DIR`.")
    entries = json.loads(mapping.read_text())
    if not isinstance(entries, dict) or not entries:
        raise ValueError(f"{mapping} must map ids to edits (a non-empty JSON object).")
    out = []
    for key, item in entries.items():
        missing = {"image_path", "original_prompt", "editing_prompt", "editing_type_id", "mask"} - set(item)
        if missing:
            raise ValueError(f"{mapping}: entry {key!r} lacks {sorted(missing)}.")
        path = next((p for p in (folder / "annotation_images" / item["image_path"], folder / item["image_path"])
                     if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{mapping}: entry {key!r}: image {item['image_path']!r} not found under "
                                    f"{folder / 'annotation_images'} or {folder}.")
        image = np.asarray(Image.open(path).convert("RGB"))
        mask = mask_decode(item["mask"], image.shape[:2], border=bool(item.get("mask_border", True)))
        source, target = plain(item["original_prompt"]), plain(item["editing_prompt"])
        kind = EDIT_TYPES.get(str(item["editing_type_id"]), str(item["editing_type_id"]))
        toy = item.get("shapes_world")
        if toy is not None:
            from ..toy.world import make_edit

            e = make_edit(int(toy["seed"]), toy["kind"], world=toy.get("world", "classic"))
            if not (np.array_equal(e.scene.image, image) and np.array_equal(e.mask, mask)
                    and (e.source, e.target) == (source, target)):
                raise ValueError(f"{mapping}: entry {key!r} says it is shapes-world edit {toy}, but its image, "
                                 "mask or prompts differ from that edit's; re-export the folder.")
            out.append(e)
        else:
            out.append(DatasetEdit(str(key), SimpleNamespace(image=image), source, target, mask, kind))
    sizes = {e.scene.image.shape for e in out}
    if len(sizes) > 1:
        raise ValueError(f"{mapping}: the images differ in size ({sorted(sizes)}); the bench batches edits of "
                         "one size — resize them first (PIE-Bench's are all 512×512).")
    return out


# --------------------------------------------------------------------------- metrics


def unedited_metrics(source, output, mask) -> dict[str, float]:
    """PIE-Bench's PSNR, MSE and SSIM on the unedited region (module docstring): both images
    (H, W, 3) uint8 multiplied by ``1 − mask``, compared over the whole image."""
    from ..metrics import ssim_map

    keep = 1.0 - np.asarray(mask, np.float64)[..., None]
    x = np.asarray(source, np.float64) / 255 * keep
    y = np.asarray(output, np.float64) / 255 * keep
    mse = float(np.mean((x - y) ** 2))
    psnr = PSNR_CAP if mse == 0 else min(PSNR_CAP, float(10 * np.log10(1.0 / mse)))
    ssim = float(ssim_map(x[None], y[None], np.ones(x.shape[:2], bool)[None]).mean())
    return dict(psnr_unedited=psnr, mse_unedited=mse, ssim_unedited=ssim)


def precision_recall(pred, true) -> tuple[float, float]:
    """``(|P ∩ T| / |P|, |P ∩ T| / |T|)``; NaN for an empty P (or T)."""
    from ..toy.successors import precision_recall as pr

    return pr(pred, true)


DEFAULT_CLIP = "openai/clip-vit-large-patch14"
"""PIE-Bench's CLIP (their ``CLIPScore(model_name_or_path="openai/clip-vit-large-patch14")``)."""
LEARNED = ("clip_score", "clip_score_edited", "lpips_unedited")
"""The rows' learned figures when their weights are on the machine: PIE-Bench's
``clip_similarity_target_image``, ``clip_similarity_target_image_edit_part`` and ``lpips_unedit_part``."""


class ClipScore:
    """PIE-Bench's CLIP score (their ``calculate_clip_similarity``, torchmetrics' ``CLIPScore``)::

        CLIP(x, t) = 100 · max(cos(E_img(x), E_txt(t)), 0)

    with ``E_img``/``E_txt`` CLIP's projected image and text embeddings (ViT-L/14 in PIE-Bench;
    the processor resizes and crops the image; a text longer than the model's positions is cut
    there, as torchmetrics cuts it). The
    edited-region score is the same on ``uint8(x · mask)`` (the edited region kept, the rest
    black), as theirs."""

    def __init__(self, model, processor, name: str):
        self.model, self.processor, self.name = model.eval(), processor, name

    def cosine(self, image, text: str) -> float:
        """``cos(E_img(image), E_txt(text))`` for one (H, W, 3) uint8 image."""
        import torch

        with warnings.catch_warnings():  # transformers 5 warns that the tokenizer's max_length is unused
            warnings.filterwarnings("ignore", message=".*max_length.*is ignored")
            inputs = self.processor(text=[text], images=[np.asarray(image, np.uint8)], return_tensors="pt",
                                    padding=True)
        cut = self.model.config.text_config.max_position_embeddings  # a longer text is cut there, as torchmetrics
        with torch.no_grad():
            out = self.model(input_ids=inputs["input_ids"][..., :cut], attention_mask=inputs["attention_mask"][..., :cut],
                             pixel_values=inputs["pixel_values"])
        img = out.image_embeds / out.image_embeds.norm(dim=-1, keepdim=True)
        txt = out.text_embeds / out.text_embeds.norm(dim=-1, keepdim=True)
        return float((img * txt).sum(-1)[0])

    def __call__(self, image, text: str, mask=None) -> float:
        """``100 · max(cos, 0)`` of ``image`` (times ``mask`` when given: NaN for an empty mask)
        and ``text`` (PIE-Bench's prompt without brackets)."""
        image = np.asarray(image)
        if mask is not None:
            m = np.asarray(mask, np.float64)
            if m.sum() == 0:
                return float("nan")
            image = np.uint8(image * m[..., None])
        return 100.0 * max(self.cosine(image, plain(text)), 0.0)


def load_clip(model: str | Path = DEFAULT_CLIP) -> ClipScore:
    """CLIP (``CLIPModel`` + ``CLIPProcessor``) from a local folder or the local Hugging Face
    cache, ``local_files_only=True``: never downloads. Raises ``LookupError`` with the reason
    when it is not on this machine (or is not a CLIP model)."""
    try:
        from transformers import CLIPModel, CLIPProcessor
    except ImportError as err:  # pragma: no cover — transformers is a dependency
        raise LookupError(f"transformers cannot load CLIP here ({err})") from None
    try:
        clip = CLIPModel.from_pretrained(str(model), local_files_only=True)
        processor = CLIPProcessor.from_pretrained(str(model), local_files_only=True)
    except OSError:
        raise LookupError(f"{model} is not on this machine (not a folder, not in the local Hugging Face cache; "
                          f"nothing is downloaded): `hf download {model}` once, or pass --clip-model DIR") from None
    except Exception as err:  # noqa: BLE001 — a folder that is not a CLIP model
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise LookupError(f"{model} could not be loaded as a CLIP model ({type(err).__name__}: {first})") from None
    return ClipScore(clip, processor, str(model))


@functools.lru_cache(maxsize=4)
def clip_scorer(model: str | None = DEFAULT_CLIP) -> ClipScore | str:
    """:func:`load_clip` once per process: the scorer, or why the CLIP score is skipped
    (``"skipped: …"``). ``None`` or ``"none"``: turned off."""
    if model is None or str(model).lower() == "none":
        return "skipped: turned off (--clip-model none)"
    try:
        return load_clip(model)
    except LookupError as err:
        return f"skipped: {err}"


def learned_row(image, text: str, mask, clip_model: str | None = DEFAULT_CLIP, *, source=None,
                lpips_weights: str | None = None) -> dict[str, float]:
    """A row's learned figures (:data:`LEARNED`) whose weights are on the machine (none: ``{}``):
    the CLIP score of the whole edited ``image`` with the editing prompt, and of its edited region
    (``mask``); with ``source`` (the unedited image), LPIPS between the two on the unedited
    region (:func:`lpips_unedited`)."""
    out = {}
    scorer = clip_scorer(clip_model)
    if not isinstance(scorer, str):
        out.update(clip_score=scorer(image, text), clip_score_edited=scorer(image, text, mask))
    if source is not None:
        lpips = lpips_scorer(lpips_weights)
        if not isinstance(lpips, str):
            out["lpips_unedited"] = lpips_unedited(lpips, source, image, mask)
    return out


def lpips_unedited(lpips, source, output, mask) -> float:
    """PIE-Bench's ``lpips_unedit_part`` (their ``calculate_lpips(src, tgt, 1 − mask, 1 − mask)``):
    both images (H, W, 3) uint8 as float32 / 255, multiplied by ``U = 1 − mask``, then
    ``LPIPS(2·U·x − 1, 2·U·y − 1)`` over the whole image. NaN when nothing is unedited."""
    import torch

    keep = 1.0 - np.asarray(mask, np.float32)[..., None]
    if keep.sum() == 0:
        return float("nan")
    x, y = (torch.tensor(np.asarray(a).astype(np.float32) / 255 * keep).permute(2, 0, 1)[None] for a in (source, output))
    device = next(lpips.parameters()).device
    with torch.no_grad():
        return float(lpips(x.to(device) * 2 - 1, y.to(device) * 2 - 1)[0])


@functools.lru_cache(maxsize=4)
def _load_lpips(backbone: str, lin: str, stamp: tuple):
    """The network on this process's GPU when there is one (0.5 s a 512×512 pair on one CPU thread)."""
    import torch

    from .lpips import load_lpips

    del backbone, stamp  # the cache key: the files and their size and time
    try:
        return load_lpips(lin, device="cuda" if torch.cuda.is_available() else "cpu")
    except LookupError as err:
        return f"skipped: {err}"


def lpips_scorer(weights: str | None = None):
    """:func:`~diffedit_lab.bench.lpips.load_lpips` once per process (per pair of files): the
    :class:`~diffedit_lab.bench.lpips.LPIPS` network, or why LPIPS is skipped (``"skipped: …"``,
    naming each missing file and where it was looked for). ``weights``: the linear-layer file
    (``--lpips-weights``), None: an installed ``lpips``'s or torchmetrics'; ``"none"``: off."""
    from .lpips import find_weights

    if weights is not None and str(weights).lower() == "none":
        return "skipped: turned off (--lpips-weights none)"
    try:
        files = find_weights(weights)
    except LookupError as err:
        return f"skipped: {err}"
    stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _load_lpips(str(files[0]), str(files[1]), stamp)


def lpips_status(weights: str | None = None) -> str:
    """``"computed: …"`` naming the two weight files used, or ``"skipped: <why>"`` (:func:`lpips_scorer`)."""
    lpips = lpips_scorer(weights)
    if isinstance(lpips, str):
        return lpips
    backbone, lin = lpips.files
    return (f"computed: LPIPS v0.1 with SqueezeNet 1.1 ({backbone}) and linear layers ({lin}), as PIE-Bench's "
            "torchmetrics LearnedPerceptualImagePatchSimilarity(net_type='squeeze'), on the unedited region "
            "(both images × (1 − mask), in [−1, 1]; lpips_unedited)")


def learned_metrics(clip_model: str | None = DEFAULT_CLIP, lpips_weights: str | None = None) -> dict[str, str]:
    """LPIPS and CLIP score: for each, ``"computed: …"`` or ``"skipped: <why>"`` (results.json's
    ``settings.learned_metrics``). Nothing is downloaded: CLIP runs only when ``clip_model`` (a
    model id or a folder) is already on this machine (:func:`clip_scorer`), LPIPS only when its two
    weight files are (:func:`lpips_scorer`)."""
    scorer = clip_scorer(clip_model)
    clip = scorer if isinstance(scorer, str) else (
        f"computed: {scorer.name}, 100·max(cos, 0) of the edited image (clip_score) and of its edited region "
        "(clip_score_edited) with the editing prompt, as PIE-Bench")
    return dict(lpips=lpips_status(lpips_weights), clip_score=clip)
