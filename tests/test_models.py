"""load_components: folders, pipelines, cached hub ids, the default model, defaults, dtypes."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

import diffedit_lab.models as models
from diffedit_lab import decode, default_device, encode, load_components, noise_diff_mask


def test_components_from_folder(tiny_components, tiny_model_dir):
    c = tiny_components
    assert isinstance(c.scheduler, DDIMScheduler) and isinstance(c.inverse_scheduler, DDIMInverseScheduler)
    assert c.scheduler.config.beta_schedule == c.inverse_scheduler.config.beta_schedule == "scaled_linear"
    assert c.inverse_scheduler.config.set_alpha_to_one is False
    assert (c.vae_scale_factor, c.latent_channels) == (2, 4)
    assert c.device == torch.device("cpu") and c.dtype == torch.float32
    assert c.defaults == {} and c.name == tiny_model_dir.name
    for net in (c.vae, c.unet, c.text_encoder):
        assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_repr_names_the_image_and_latent_sizes_the_model_works_at(tiny_components, tiny_image):
    """The notebooks print ``c`` instead of writing one model's sizes into their text."""
    c = tiny_components
    side = c.unet.config.sample_size
    assert f"images={side * 2}×{side * 2}, latents={side}×{side}×4" in repr(c)
    assert tuple(encode(c, tiny_image.resize((side * 2, side * 2))).shape) == (1, 4, side, side)


def test_v_prediction_config_is_kept(tiny_components_v):
    assert tiny_components_v.scheduler.config.prediction_type == "v_prediction"
    assert tiny_components_v.inverse_scheduler.config.prediction_type == "v_prediction"


def test_components_from_pipeline(tiny_model_dir):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None, requires_safety_checker=False)
    c = load_components(pipe, device="cpu")
    assert c.unet is pipe.unet and c.vae is pipe.vae
    assert c.scheduler.config.steps_offset == 1


def test_defaults_file_is_read(tmp_path, tiny_model_dir):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "with_defaults")
    (folder / "diffedit_lab.json").write_text(json.dumps({"guidance": 5.0, "mask_strength": 0.4}))
    c = load_components(folder, device="cpu")
    assert c.defaults == {"guidance": 5.0, "mask_strength": 0.4}


def test_none_loads_the_default_model_folder(monkeypatch, tiny_model_dir):
    monkeypatch.setattr(models, "DEFAULT_MODEL_DIR", tiny_model_dir)
    assert load_components(device="cpu").name == tiny_model_dir.name


def test_cached_hub_id_loads_without_network(monkeypatch, tmp_path, tiny_model_dir):
    """A hub id is resolved in the local Hugging Face cache only (``local_files_only``)."""
    import huggingface_hub.constants as hf_constants

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--someone--tiny-sd"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    c = load_components("someone/tiny-sd", device="cpu")
    assert c.name == "someone/tiny-sd" and c.latent_channels == 4


def test_default_device_and_dtype(monkeypatch):
    monkeypatch.delenv("DIFFEDIT_DEVICE", raising=False)
    monkeypatch.delenv("DIFFEDIT_DTYPE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert default_device().type == expected
    assert models.default_dtype(torch.device("cuda")) == torch.float16
    assert models.default_dtype(torch.device("cpu")) == torch.float32


def test_environment_overrides_device_and_dtype(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("DIFFEDIT_DEVICE", "cpu")
    monkeypatch.setenv("DIFFEDIT_DTYPE", "bfloat16")
    assert default_device() == torch.device("cpu")
    c = load_components(tiny_model_dir)
    assert c.dtype == c.unet.dtype == torch.bfloat16 and c.vae.dtype == torch.float32
    assert load_components(tiny_model_dir, dtype="float32").dtype == torch.float32
    monkeypatch.setenv("DIFFEDIT_DTYPE", "float8")
    with pytest.raises(ValueError, match="DIFFEDIT_DTYPE='float8'"):
        load_components(tiny_model_dir)


def test_half_precision_keeps_the_vae_in_float32(tiny_model_dir, tiny_image):
    """fp16 UNet/text encoder, fp32 VAE (the SD VAE overflows in fp16): no NaNs anywhere."""
    c = load_components(tiny_model_dir, device="cpu", dtype=torch.float16)
    assert c.unet.dtype == c.text_encoder.dtype == torch.float16 and c.vae.dtype == torch.float32
    z0 = encode(c, tiny_image)
    assert z0.dtype == torch.float32 and torch.isfinite(z0).all()
    mask = noise_diff_mask(c, z0, "a red circle", "a blue square", n=2, seed=0, progress=False)
    assert torch.isfinite(mask.difference).all()
    assert decode(c, z0)[0].size == tiny_image.size


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_defaults_to_half_precision_without_nans(tiny_model_dir, tiny_image):
    from diffedit_lab import edit

    c = load_components(tiny_model_dir)
    assert c.device.type == "cuda" and c.dtype == torch.float16 and c.vae.dtype == torch.float32
    result = edit(c, tiny_image, "a red circle", "a blue square", n=2, steps=4, seed=0, progress=False)
    assert torch.isfinite(result.latents).all()


def test_network_imports_pause_the_collector_then_freeze_what_they_made():
    """import_networks (the first thing load_components does) imports diffusers' and transformers'
    classes with the cyclic GC paused, freezes the heap they made (cheaper full collections and
    exit), and leaves the collector as it found it; a second call, the modules already there, does
    nothing. In a fresh interpreter: this one imported diffusers long ago."""
    import subprocess
    import sys
    from pathlib import Path

    code = """
import gc, sys
import diffedit_lab.models as m
assert not any(name in sys.modules for name in m.NETWORK_MODULES)
gc.disable()
m.import_networks()
assert all(name in sys.modules for name in m.NETWORK_MODULES)
assert not gc.isenabled() and gc.get_freeze_count() > 100000, gc.get_freeze_count()
gc.enable()
gc.unfreeze()
m.import_networks()
assert gc.isenabled() and gc.get_freeze_count() == 0
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          cwd=str(Path(__file__).resolve().parents[1]))
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
