"""Running the speed benchmark (:mod:`diffedit_lab.bench.speed`): the two sides (diffusers' pipeline and
ours, at one :class:`~diffedit_lab.settings.EditSettings`), the clocks, the scenarios and the memory
subprocesses."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..inputs import model_side
from ..models import set_threads
from ..settings import EditSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from diffusers import StableDiffusionDiffEditPipeline
    from PIL import Image

    from ..inversion import Inversion
    from ..models import Components

GOALS = {"a": 0.90, "b": 0.75, "c": 0.40, "d": 20.0, "e": 0.10, "f": 0.15, "g": 0.60, "edit_s": 3.5, "memory": 1.0}
SOURCE = "a red circle and a blue square"
TARGETS = (
    "a green circle and a blue square",
    "a yellow circle and a blue square",
    "a red square and a blue square",
    "a red triangle and a blue square",
    "a blue circle and a blue square",
)
COLOURS = ("red", "green", "blue", "yellow")  # words every shapes model knows (the richer world's too)
SHAPES = ("circle", "square", "triangle")
SEED = 0
IDENTICAL = dict(mask_cells=0, inversion=1e-5, decoding=1e-4)
DIFFUSERS_THRESHOLD = 0.5  # generate_mask always binarises at 0.5 (a model's recorded τ is for edit())


def settings_for(c: Components, *, steps: int | None = None, n: int | None = None) -> EditSettings:
    """The model's settings (``EditSettings.for_model``) with the bench's ``steps`` and ``n``."""
    return EditSettings.for_model(c, steps=steps, n=n)


# ------------------------------------------------------------------------------------------
# the two sides


def diffusers_pipeline(folder: str | Path):
    """diffusers' DiffEdit pipeline from ``folder``, as its documentation builds it."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler, StableDiffusionDiffEditPipeline

    pipe = StableDiffusionDiffEditPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.inverse_scheduler = DDIMInverseScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cpu")


def _generator():
    return torch.Generator().manual_seed(SEED)


def diffusers_mask(pipe: StableDiffusionDiffEditPipeline, image: Image.Image, source: str, target: str, s: EditSettings, clamp_ratio: float | None = None):
    return pipe.generate_mask(
        image=image, source_prompt=source, target_prompt=target, num_maps_per_mask=s.n,
        mask_encode_strength=s.mask_noise, mask_thresholding_ratio=clamp_ratio or s.clamp_ratio,
        guidance_scale=s.guidance, num_inference_steps=s.steps, generator=_generator(),
    )


def diffusers_edit(pipe: StableDiffusionDiffEditPipeline, image: Image.Image, source: str, target: str, s: EditSettings, output_type: str = "pil"):
    """``generate_mask`` + ``invert`` (guided with the source text, as documented) + ``__call__``."""
    mask = diffusers_mask(pipe, image, source, target, s)
    latents = pipe.invert(
        prompt=source, image=image, num_inference_steps=s.steps, inpaint_strength=s.encoding_ratio,
        guidance_scale=s.guidance, generator=_generator(),
    ).latents
    images = pipe(
        prompt=target, mask_image=mask, image_latents=latents, num_inference_steps=s.steps,
        inpaint_strength=s.encoding_ratio, guidance_scale=s.guidance, output_type=output_type,
    ).images
    return mask, latents, images


def diffusers_default_edit(pipe: StableDiffusionDiffEditPipeline, image: Image.Image, source: str, target: str):
    """Scenarios (f) and (g)'s reference: the whole edit as diffusers' documentation writes it
    (``StableDiffusionDiffEditPipeline``'s example), every setting at the pipeline's defaults —
    50 steps, 10 mask draws at noise 0.5, κ 3, inversion and decoding at inpaint_strength 0.8,
    guidance 7.5 in all three calls. Only the generator is passed (same seed, same result)."""
    mask = pipe.generate_mask(image=image, source_prompt=source, target_prompt=target, generator=_generator())
    latents = pipe.invert(prompt=source, image=image, generator=_generator()).latents
    return pipe(prompt=target, mask_image=mask, image_latents=latents, generator=_generator()).images


def ours_identical(c: Components, image: Image.Image, source: str, target: str, s: EditSettings):
    """Scenario (a): our step functions at diffusers' settings (guided inversion with the source
    text, the VAE latent sampled with the seed, τ = 0.5); each text is encoded once."""
    from .. import ddim_invert, decode, encode_prompt, masked_denoise, noise_diff_mask

    emb = {text: encode_prompt(c, text) for text in dict.fromkeys(("", source, target))}
    mask = noise_diff_mask(
        c, image, emb[source], emb[target], n=s.n, mask_noise=s.mask_noise, guidance=s.guidance,
        clamp_ratio=s.clamp_ratio, threshold=DIFFUSERS_THRESHOLD, seed=SEED, steps=s.steps,
        source_negative_prompt=emb[""], target_negative_prompt=emb[""], progress=False,
    )
    inversion = ddim_invert(
        c, image, emb[source], encoding_ratio=s.encoding_ratio, steps=s.steps, guidance=s.guidance, negative_prompt=emb[""],
        seed=SEED, progress=False,
    )
    latents = masked_denoise(c, inversion, mask, emb[target], negative_prompt=emb[""], guidance=s.guidance,
                             progress=False).latents
    return mask, inversion, decode(c, latents)


def ours_defaults(c: Components, image: Image.Image, source: str, target: str, s: EditSettings):
    """Scenario (b): ``edit()`` at our defaults (unguided inversion, the VAE mean)."""
    from .. import edit

    return edit(c, image, source, target, s, seed=SEED, progress=False)


def ours_session(c: Components, image: Image.Image, source: str, targets: Sequence[str], s: EditSettings):
    """Scenario (c): one EditSession for all the targets, decodings batched (``run_many``)."""
    from .. import EditSession

    return EditSession(c, image).run_many(source, list(targets), s, seed=SEED, progress=False)


def fresh_targets(seen: Sequence[str] = ()):
    """Target texts of two objects (:data:`COLOURS` × :data:`SHAPES`), none of ``seen`` — for
    (f), where each timed call must be a text the session has not met (144 in all)."""
    for c1, s1, c2, s2 in itertools.product(COLOURS, SHAPES, COLOURS, SHAPES):
        text = f"a {c1} {s1} and a {c2} {s2}"
        if text not in seen:
            yield text


SESSION_CACHES = ("_embeddings", "_draws", "_sources", "_masks", "_inversions", "_decodings")


def cache_keys(session) -> dict:
    """The keys every cache of an :class:`~diffedit_lab.EditSession` holds, and its inversion count."""
    return {**{name: set(getattr(session, name)) for name in SESSION_CACHES},
            "inversions_computed": session.inversions_computed}


def cache_use(before: dict, after: dict) -> dict:
    """What a call computed: the new entries of each cache (0: taken from the cache, or unused)."""
    out = {name.strip("_"): len(after[name] - before[name]) for name in SESSION_CACHES}
    out["inversions_computed"] = after["inversions_computed"] - before["inversions_computed"]
    return out


# a new target on a warm session computes its text embedding, its mask (the target branch: n UNet
# rows) and its decoding — nothing else: the draws, the source branch and the inversion are hits
NEW_TARGET_COMPUTES = dict(embeddings=1, draws=0, sources=0, masks=1, inversions=0, decodings=1, inversions_computed=0)


def ours_new_target(session, source: str, target: str, s: EditSettings):
    """Scenario (f): ``session.run`` with a target it has not seen; returns the result and what
    the call computed (:func:`cache_use`)."""
    before = cache_keys(session)
    result = session.run(source, target, s, seed=SEED, progress=False)
    return result, cache_use(before, cache_keys(session))


def diffusers_blend(inversion: Inversion):
    """The inversion shifted one level, so that ``masked_denoise`` blends like diffusers: with the
    latent of level t after the step to t − 1 (docs/differences.md §1)."""
    trajectory = inversion.trajectory
    return dataclasses.replace(inversion, trajectory=torch.cat([trajectory[1:], trajectory[-1:]]))


# ------------------------------------------------------------------------------------------
# measuring


class ForwardClock:
    """CPU time spent inside the forward passes of some networks, and the UNet's calls and rows.

    Forward hooks time the modules; with ``fast_unet``, the UNet is timed by wrapping
    :func:`diffedit_lab.fast_unet.unet_forward` instead (a hook on the UNet would switch
    ``diffedit_lab`` back to diffusers' forward, see :func:`diffedit_lab.fast_unet.usable`)."""

    def __init__(self, networks: dict, *, fast_unet: bool = False):
        self.seconds = 0.0
        self.by_network: dict = {}
        self.unet_calls = self.unet_rows = 0
        self._start: dict = {}
        self._handles = []
        self._restore = None
        for name, net in networks.items():
            if name == "unet" and fast_unet:
                self._wrap_fast_unet()
            else:
                self._handles.append(net.register_forward_pre_hook(self._pre(name)))
                self._handles.append(net.register_forward_hook(self._post(name)))

    def _wrap_fast_unet(self) -> None:
        from .. import fast_unet

        original, pre, post = fast_unet.unet_forward, self._pre("unet"), self._post("unet")

        def timed_forward(unet, sample, *args):
            pre(unet, (sample,))
            out = original(unet, sample, *args)
            post(unet, (sample,), out)
            return out

        fast_unet.unet_forward = timed_forward
        self._restore = lambda: setattr(fast_unet, "unet_forward", original)

    def _pre(self, name):
        def hook(module, args):
            self._start[name] = time.process_time()
            if name == "unet":
                self.unet_calls += 1
                self.unet_rows += int(args[0].shape[0])

        return hook

    def _post(self, name):
        def hook(module, args, output):
            dt = time.process_time() - self._start.pop(name)
            self.seconds += dt
            self.by_network[name] = self.by_network.get(name, 0.0) + dt

        return hook

    @property
    def model_calls(self) -> int:
        return self.unet_calls

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        if self._restore is not None:
            self._restore()


def networks(vae: torch.nn.Module, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> dict:
    return dict(unet=unet, text_encoder=text_encoder, vae_encoder=vae.encoder, vae_decoder=vae.decoder,
                quant_conv=vae.quant_conv, post_quant_conv=vae.post_quant_conv)


def timed(fn: Callable[[], object]):
    """``fn()`` and its wall-clock and CPU time (this process, all threads) in seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), out


@dataclasses.dataclass
class Timing:
    wall: float
    cpu: float


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def scene(size: int) -> np.ndarray:
    """A red disc and a blue square on a light background, ``size``×``size`` RGB uint8."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    img = np.empty((size, size, 3), np.uint8)
    img[...] = (238, 236, 230)
    img[(yy - size * 0.5) ** 2 + (xx - size * 0.3) ** 2 < (size * 0.18) ** 2] = (215, 40, 40)
    img[(abs(yy - size * 0.5) < size * 0.14) & (abs(xx - size * 0.74) < size * 0.14)] = (40, 80, 215)
    return img


# ------------------------------------------------------------------------------------------
# one model


def bench_model(label: str, folder: Path, a: argparse.Namespace) -> dict:
    from PIL import Image

    from .. import load_components
    from ..sampling import takes_fast_unet

    c = load_components(folder, device="cpu", dtype=torch.float32)
    eager = dataclasses.replace(c, fast_unet=False)  # the same networks through diffusers' UNet forward
    pipe = diffusers_pipeline(folder)
    s = settings_for(c, steps=a.steps, n=a.n)
    image = Image.fromarray(scene(model_side(c)))  # the model's training size: 64 px for the shipped model
    log(f"[{label}] {folder}: {image.size[0]}×{image.size[1]} images, settings {s.as_dict()}")

    from .. import EditSession

    session = EditSession(c, image)  # (f): warm — the image encoded, a first target's edit done
    session.run(SOURCE, TARGETS[0], s, seed=SEED, progress=False)
    fresh = fresh_targets((SOURCE, *TARGETS))
    f_round: dict = {}

    def new_target():
        target = next(fresh, None)
        if target is None:
            raise RuntimeError("scenario (f) ran out of unseen target texts: use fewer --rounds (at most 140).")
        f_round["target"] = target  # diffusers' (f) edit of the round uses it too
        return ours_new_target(session, SOURCE, target, s)

    jobs = {
        ("diffusers", "a"): lambda: diffusers_edit(pipe, image, SOURCE, TARGETS[0], s),
        ("ours", "a"): lambda: ours_identical(c, image, SOURCE, TARGETS[0], s),
        ("ours", "a_eager"): lambda: ours_identical(eager, image, SOURCE, TARGETS[0], s),
        ("ours", "b"): lambda: ours_defaults(c, image, SOURCE, TARGETS[0], s),
        ("diffusers", "c"): lambda: [diffusers_edit(pipe, image, SOURCE, t, s) for t in TARGETS],
        ("ours", "c"): lambda: ours_session(c, image, SOURCE, TARGETS, s),
        ("ours", "f"): new_target,
        ("diffusers", "f"): lambda: diffusers_default_edit(pipe, image, SOURCE, f_round.get("target", TARGETS[1])),
    }
    computed = []  # (f): what each new-target call computed
    times: dict = {k: [] for k in jobs}
    outputs: dict = {}
    total = a.warmup + a.rounds
    for r in range(total):
        order = list(jobs) if r % 2 == 0 else list(reversed(jobs))
        for key in order:
            dt, outputs[key] = timed(jobs[key])
            if key == ("ours", "f"):
                computed.append(outputs[key][1])
            if r >= a.warmup:
                times[key].append(dt)
            tag = "warm-up" if r < a.warmup else f"round {r - a.warmup + 1}/{a.rounds}"
            log(f"[{label}] {tag}: {key[0]:<9} ({key[1]}) {dt.cpu:7.3f} s CPU, {dt.wall:7.3f} s wall")
    result = {
        "folder": str(folder),
        "fast_unet": takes_fast_unet(c),
        "image_size": list(image.size),
        "settings": s.as_dict(),
        "times_s": {f"{side}_{sc}": [dataclasses.asdict(t) for t in v] for (side, sc), v in times.items()},
    }
    scenarios = {
        "a": _ratio(times[("diffusers", "a")], times[("ours", "a")], GOALS["a"]),
        "a_eager": _ratio(times[("diffusers", "a")], times[("ours", "a_eager")], GOALS["a"]),
        "b": _ratio(times[("diffusers", "a")], times[("ours", "b")], GOALS["b"]),
        "c": _ratio(times[("diffusers", "c")], times[("ours", "c")], GOALS["c"]),
        "f": _ratio(times[("diffusers", "f")], times[("ours", "f")], GOALS["f"]),
    }
    recorded = a.steps is None and a.n is None
    b = scenarios["b"]
    scenarios["edit_s"] = dict(ours=b["ours"], ours_wall=b["ours_wall"], goal=GOALS["edit_s"], unit="s",
                               recorded_settings=recorded, holds=recorded and b["ours"] <= GOALS["edit_s"])
    scenarios["f"].update(new_target_checks(label, c, session, s, computed, next(fresh)))
    scenarios["a"]["identical"] = identical(c, pipe, image, s, outputs[("ours", "a")], outputs[("diffusers", "a")])
    scenarios["d"] = rethreshold(label, c, pipe, image, s, a)
    scenarios["e"] = overhead(label, c, pipe, image, s)
    if a.cold:
        scenarios["g"] = cold_start(label, folder, image, s, a)
    result["scenarios"] = scenarios
    if a.memory:
        result["memory"] = memory(label, folder, s, a)
    return result


def _ratio(theirs: list, ours: list, goal: float, unit: str = "s", scale: float = 1.0) -> dict:
    """Medians of the CPU times, and the ratio: the median of the rounds' ours / diffusers (each
    round's pair measured minutes apart at most, so a drifting machine load cancels)."""
    rounds = [o.cpu / t.cpu for o, t in zip(ours, theirs)]
    ratio, wall = median(rounds), median([o.wall / t.wall for o, t in zip(ours, theirs)])
    return dict(diffusers=median([t.cpu for t in theirs]) * scale, ours=median([o.cpu for o in ours]) * scale,
                ratio=ratio, ratio_range=[min(rounds), max(rounds)], ratio_wall=wall, goal=goal, holds=ratio <= goal,
                unit=unit,
                diffusers_wall=median([t.wall for t in theirs]) * scale, ours_wall=median([o.wall for o in ours]) * scale)


def identical(c: Components, pipe: StableDiffusionDiffEditPipeline, image: Image.Image, s: EditSettings, ours: tuple, theirs: tuple) -> dict:
    """What "identical outputs" means for (a), checked on the timed runs' outputs."""
    from .. import decode, masked_denoise

    mask, inversion, images = ours
    d_mask, d_latents, d_images = theirs
    cells = int((mask.mask.cpu().numpy() != np.asarray(d_mask, dtype=np.float32)).sum())
    inv = float((inversion.to_diffusers() - d_latents).abs().max())
    # the decoding alone, from the same mask and inversion: diffusers' __call__ against ours with its blend
    call = pipe(
        prompt=TARGETS[0], mask_image=mask.mask.cpu().numpy(), image_latents=inversion.to_diffusers(),
        num_inference_steps=s.steps, inpaint_strength=s.encoding_ratio, guidance_scale=s.guidance, output_type="np",
    ).images
    blended = masked_denoise(c, diffusers_blend(inversion), mask, TARGETS[0], guidance=s.guidance, progress=False)
    dec = float(np.abs(decode(c, blended.latents, output_type="np") - call).max())
    ours_vs_theirs = float(np.abs(np.asarray(images[0], np.float32) - np.asarray(d_images[0], np.float32)).max()) / 255
    holds = cells <= IDENTICAL["mask_cells"] and inv <= IDENTICAL["inversion"] and dec <= IDENTICAL["decoding"]
    return dict(
        mask_cells_differing=cells, mask_cells=int(mask.mask.numel()), mask_fraction=float(mask.mask.mean()),
        inversion_max_abs=inv, decoding_with_diffusers_blend_max_abs=dec,
        our_output_vs_diffusers_max_abs=ours_vs_theirs, holds=holds,
    )


def rethreshold(label: str, c: Components, pipe: StableDiffusionDiffEditPipeline, image: Image.Image, s: EditSettings, a: argparse.Namespace) -> dict:
    """(d): an existing mask re-thresholded by ``EditSession.mask`` — on the edits' latents
    against diffusers' ``generate_mask`` (which returns only the binary mask, so a new threshold is
    a new mask pass), and on 64×64 latents (random, one draw) for the goal."""
    from .. import EditSession

    big = EditSession(c, torch.randn(1, c.latent_channels, 64, 64, generator=torch.Generator().manual_seed(SEED)))
    small = EditSession(c, image)
    mask_kw = dict(seed=SEED, steps=s.steps, mask_noise=s.mask_noise, guidance=s.guidance)
    sessions = {"ours_64": (big, dict(mask_kw, n=1)), "ours": (small, dict(mask_kw, n=s.n))}
    for session, kw in sessions.values():
        session.mask(SOURCE, TARGETS[0], **kw)  # the mask pass, once
    values = [(0.3 + 0.4 * i / 9, 1.5 + 0.25 * (i % 5)) for i in range(10)]
    times: dict = {"ours_64": [], "ours": [], "diffusers": []}
    clock = ForwardClock(networks(c.vae, c.unet, c.text_encoder))
    try:
        for r in range(a.warmup + a.rounds):
            for name, (session, kw) in sessions.items():
                for threshold, clamp_ratio in values:
                    dt, _ = timed(lambda: session.mask(SOURCE, TARGETS[0], threshold=threshold,
                                                       clamp_ratio=clamp_ratio, **kw))
                    times[name] += [dt] if r >= a.warmup else []
            model_calls = clock.model_calls
            dt, _ = timed(lambda: diffusers_mask(pipe, image, SOURCE, TARGETS[0], s, clamp_ratio=1.5 + r % 3))
            times["diffusers"] += [dt] * len(values) if r >= a.warmup else []  # paired with the round's values
    finally:
        clock.remove()
    out = _ratio(times["diffusers"], times["ours"], GOALS["d"], "ms", 1e3)
    ours_64 = median([t.wall for t in times["ours_64"]]) * 1e3  # the goal is on the latency one waits for
    grid = list(small.z0.shape[-2:])  # the edits' latent grid (16×16 for the shipped model)
    log(f"[{label}] (d) re-threshold: ours {out['ours']:.2f} ms ({grid[0]}×{grid[1]}), {ours_64:.2f} ms wall (64×64), "
        f"{model_calls} model calls; diffusers' generate_mask {out['diffusers']:.0f} ms")
    out.update(ours_64=ours_64, model_calls=model_calls, grid=grid, holds=ours_64 <= GOALS["d"] and model_calls == 0,
               samples=len(times["ours"]))
    return out


def overhead(label: str, c: Components, pipe: StableDiffusionDiffEditPipeline, image: Image.Image, s: EditSettings) -> dict:
    """(e): time outside the networks' forward passes, one hooked run per side and scenario."""
    from ..sampling import takes_fast_unet

    runs = {
        "diffusers_a": (networks(pipe.vae, pipe.unet, pipe.text_encoder),
                        lambda: diffusers_edit(pipe, image, SOURCE, TARGETS[0], s)),
        "ours_a": (networks(c.vae, c.unet, c.text_encoder), lambda: ours_identical(c, image, SOURCE, TARGETS[0], s)),
        "ours_b": (networks(c.vae, c.unet, c.text_encoder), lambda: ours_defaults(c, image, SOURCE, TARGETS[0], s)),
    }
    out = {}
    for name, (nets, fn) in runs.items():
        clock = ForwardClock(nets, fast_unet=name.startswith("ours") and takes_fast_unet(c))
        try:
            dt, _ = timed(fn)
        finally:
            clock.remove()
        out[name] = dict(total_s=dt.cpu, forward_s=clock.seconds, overhead=1 - clock.seconds / dt.cpu,
                         unet_calls=clock.unet_calls, unet_rows=clock.unet_rows)
        log(f"[{label}] (e) {name}: {dt.cpu:.3f} s CPU, {out[name]['overhead']:.1%} outside the forward passes, "
            f"{clock.unet_calls} UNet calls, {clock.unet_rows} rows")
    worst = max(out["ours_a"]["overhead"], out["ours_b"]["overhead"])
    return dict(runs=out, ours=worst, diffusers=out["diffusers_a"]["overhead"], goal=GOALS["e"],
                holds=worst <= GOALS["e"], unit="share")


def new_target_checks(label: str, c: Components, session, s: EditSettings, computed: list, target: str) -> dict:
    """(f)'s checks and where its time goes: what the timed calls computed (each must be the
    work of a new target, :data:`NEW_TARGET_COMPUTES`, never a cache hit), and one more new
    target with the networks' forward passes timed."""
    from ..sampling import takes_fast_unet

    clock = ForwardClock(networks(c.vae, c.unet, c.text_encoder), fast_unet=takes_fast_unet(c))
    try:
        dt, (_, use) = timed(lambda: ours_new_target(session, SOURCE, target, s))
    finally:
        clock.remove()
    computed = [*computed, use]
    every = all(u == NEW_TARGET_COMPUTES for u in computed)
    split = {k: clock.by_network.get(k, 0.0) for k in ("text_encoder", "unet", "vae_decoder", "post_quant_conv")}
    rows_mask = s.n
    decoding_steps = clock.unet_calls - 1
    log(f"[{label}] (f) new target {target!r}: {dt.cpu:.3f} s CPU — UNet {split['unet']:.3f} s "
        f"({clock.unet_calls} calls, {clock.unet_rows} rows), text encoder {split['text_encoder']:.3f} s, "
        f"VAE decoder {split['vae_decoder'] + split['post_quant_conv']:.3f} s; computed {use}")
    return dict(
        computed=computed, computes_only_the_new_target=every, expected_computes=NEW_TARGET_COMPUTES,
        profile=dict(total_s=dt.cpu, unet_s=split["unet"], text_encoder_s=split["text_encoder"],
                     vae_decoder_s=split["vae_decoder"] + split["post_quant_conv"],
                     other_s=dt.cpu - clock.seconds, unet_calls=clock.unet_calls, unet_rows=clock.unet_rows,
                     mask_rows=rows_mask, decoding_steps=decoding_steps),
    )


# ------------------------------------------------------------------------------------------
# cold start, in subprocesses

COLD_OURS = """\
import json, time
import diffedit_lab as dl
from PIL import Image
c = dl.load_components({folder!r})
loaded = time.process_time()
result = dl.edit(c, Image.open({image!r}), {source!r}, {target!r}, seed={seed}{overrides})
result.image.save({out!r})
print(json.dumps(dict(load=loaded, edit=time.process_time() - loaded)))
"""

COLD_DIFFUSERS = """\
import json, time
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, StableDiffusionDiffEditPipeline
from PIL import Image
pipe = StableDiffusionDiffEditPipeline.from_pretrained({folder!r})
pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
pipe.inverse_scheduler = DDIMInverseScheduler.from_config(pipe.scheduler.config)
loaded = time.process_time()
image = Image.open({image!r}).convert("RGB")
mask = pipe.generate_mask(image=image, source_prompt={source!r}, target_prompt={target!r},
                          generator=torch.Generator().manual_seed({seed}))
latents = pipe.invert(prompt={source!r}, image=image, generator=torch.Generator().manual_seed({seed})).latents
edited = pipe(prompt={target!r}, mask_image=mask, image_latents=latents,
              generator=torch.Generator().manual_seed({seed})).images[0]
edited.save({out!r})
print(json.dumps(dict(load=loaded, edit=time.process_time() - loaded)))
"""
"""The two cold starts, as a user writes them: ours from ``import diffedit_lab`` (the model's
recorded settings), diffusers' as its documentation does (the pipeline's defaults; the DDIM and
inverse DDIM schedulers are the documented set-up, the folder ships no inverse scheduler)."""


def cold_child(side: str, folder: Path, image_path: Path, out: Path, s: EditSettings, a: argparse.Namespace) -> str:
    """The program of one cold start: ``python -c`` runs it in a fresh interpreter."""
    overrides = "".join(f", {k}={v!r}" for k, v in (("steps", a.steps), ("n", a.n)) if v is not None)
    template = COLD_OURS if side == "ours" else COLD_DIFFUSERS
    return template.format(folder=str(folder), image=str(image_path), source=SOURCE, target=TARGETS[0], seed=SEED,
                           out=str(out), overrides=overrides)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cold_start(label: str, folder: Path, image: Image.Image, s: EditSettings, a: argparse.Namespace) -> dict:
    """(g): a fresh interpreter per sample, from its start to the edited image saved — the whole
    subprocess, interpreter start and imports included; wall-clock around it and its CPU time
    (``RUSAGE_CHILDREN``, user + system), sides alternating. The child reports the CPU time
    it had spent when the model was loaded (``load``: the interpreter, the imports, the loading)
    and the edit's (``edit``, saving included); the rest is the interpreter's exit (``exit``)."""
    import tempfile

    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads),
           "DIFFEDIT_THREADS": str(a.threads), "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    times: dict = {"ours": [], "diffusers": []}
    phases: dict = {"ours": [], "diffusers": []}
    root = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory(prefix="diffedit_cold_") as tmp:
        image_path = Path(tmp) / "scene.png"
        image.save(image_path)
        for r in range(a.warmup + a.rounds):
            for side in ("diffusers", "ours") if r % 2 == 0 else ("ours", "diffusers"):
                out = Path(tmp) / f"{side}_{r}.png"
                cmd = [sys.executable, "-c", cold_child(side, folder, image_path, out, s, a)]
                cpu, wall = _children_cpu(), time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=root, env=env)
                dt = Timing(time.perf_counter() - wall, _children_cpu() - cpu)
                if proc.returncode != 0 or not out.is_file():
                    raise RuntimeError(f"cold start ({side}) failed:\n{proc.stderr[-2000:]}")
                from PIL import Image as PILImage

                with PILImage.open(out) as edited:
                    if edited.size != image.size:
                        raise RuntimeError(f"cold start ({side}): edited image {edited.size}, expected {image.size}")
                child = json.loads(proc.stdout.strip().splitlines()[-1])
                counted = r >= a.warmup
                child["exit"] = dt.cpu - child["load"] - child["edit"]  # the interpreter's shutdown (and rounding)
                if counted:
                    times[side].append(dt)
                    phases[side].append(child)
                tag = "warm-up" if not counted else f"round {r - a.warmup + 1}/{a.rounds}"
                log(f"[{label}] (g) cold start {tag}: {side:<9} {dt.cpu:7.3f} s CPU, {dt.wall:7.3f} s wall "
                    f"(loaded at {child['load']:.2f} s CPU, edit {child['edit']:.2f} s)")
    out = _ratio(times["diffusers"], times["ours"], GOALS["g"])
    out["phases_s"] = {side: {k: median([p[k] for p in v]) for k in ("load", "edit", "exit")}
                       for side, v in phases.items()}
    out["threads"] = a.threads
    return out


# ------------------------------------------------------------------------------------------
# peak memory, in subprocesses


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory_child(spec: dict) -> dict:
    """One cold edit in this fresh process: the peak RSS above the RSS before it."""
    import resource

    from PIL import Image

    from .. import load_components

    set_threads(spec["threads"])
    side, folder = spec["side"], spec["folder"]
    if side == "diffusers":
        pipe = diffusers_pipeline(folder)
        size = model_side(pipe)  # a diffusers pipeline has the same unet and vae_scale_factor
    else:
        c = load_components(folder, device="cpu", dtype=torch.float32)
        size = model_side(c)
    s = EditSettings(**spec["settings"])
    image = Image.fromarray(scene(size))
    run = {
        "diffusers": lambda: diffusers_edit(pipe, image, SOURCE, TARGETS[0], s),
        "ours_a": lambda: ours_identical(c, image, SOURCE, TARGETS[0], s),
        "ours_b": lambda: ours_defaults(c, image, SOURCE, TARGETS[0], s),
    }[side]
    gc.collect()
    try:
        before = _rss_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
        method = "VmHWM after /proc/self/clear_refs, minus VmRSS before the edit"
    except OSError:
        before, method = 0, "ru_maxrss (peak since the process started, models included)"
    run()
    try:
        peak = _rss_kb("VmHWM")
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(side=side, before_kb=before, peak_kb=peak, delta_mb=(peak - before) / 1024, method=method)


def memory(label: str, folder: Path, s: EditSettings, a: argparse.Namespace) -> dict:
    spec = dict(folder=str(folder), settings=s.as_dict(), threads=a.threads)
    sides = ("diffusers", "ours_a", "ours_b")
    deltas: dict = {k: [] for k in sides}
    method = ""
    for r in range(a.memory_reps):
        for side in sides if r % 2 == 0 else reversed(sides):
            cmd = [sys.executable, "-m", "diffedit_lab.bench.speed", "--memory-child", json.dumps({**spec, "side": side})]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                                  cwd=str(Path(__file__).resolve().parents[2]))
            if proc.returncode != 0:
                raise RuntimeError(f"memory measurement ({side}) failed:\n{proc.stderr[-2000:]}")
            child = json.loads(proc.stdout.strip().splitlines()[-1])
            deltas[side].append(child["delta_mb"])
            method = child["method"]
            log(f"[{label}] memory {side}: +{child['delta_mb']:.1f} MB")
    med = {k: median(v) for k, v in deltas.items()}
    worst = max(med["ours_a"], med["ours_b"])
    return dict(diffusers_mb=med["diffusers"], ours_mb=worst, ours_a_mb=med["ours_a"], ours_b_mb=med["ours_b"],
                ratio=worst / med["diffusers"] if med["diffusers"] > 0 else float("nan"),
                holds=worst <= med["diffusers"] * GOALS["memory"], samples=deltas, method=method)
