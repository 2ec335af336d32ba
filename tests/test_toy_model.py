"""The embedded shapes-world model: it is the default, it is a genuine diffusers checkpoint,
the training script reproduces the format, and it does something meaningful (loose bars)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_lab import DEFAULT_MODEL_DIR, load_components
from diffedit_lab.toy.world import WORDS, make_edit

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "model_index.json").exists(), reason="the embedded model folder is missing"
)


@pytest.fixture(scope="module")
def toy():
    return load_components(device="cpu")


def test_default_model_is_the_embedded_folder(toy):
    assert toy.name == str(DEFAULT_MODEL_DIR) or DEFAULT_MODEL_DIR.name in toy.name
    assert toy.unet.config.sample_size == 64 // toy.vae_scale_factor, "the UNet was trained on another VAE's latent grid"
    recorded = json.loads((DEFAULT_MODEL_DIR / "diffedit_lab.json").read_text())
    assert toy.defaults == recorded and recorded["inversion_guidance"] == 1.0


def test_model_card_architecture_table_is_the_shipped_configuration(toy):
    """The card's table (sizes, factor, channels, where cross-attention sits, parameters) is read
    back and compared with the folder's configs, so a retrained model cannot ship under an old card."""
    import re

    from diffedit_lab.inputs import model_side

    card = (DEFAULT_MODEL_DIR / "README.md").read_text()
    row = {m[0]: m[1:] for m in re.findall(r"^\| ([A-Za-z ]+) \(`\w+`\) \| (.+?) \| ([\d.]+) M \|$", card, re.M)}
    millions = lambda net: round(sum(p.numel() for p in net.parameters()) / 1e6, 2)  # noqa: E731

    side, f = model_side(toy), toy.vae_scale_factor
    grid = side // f
    vae, unet = toy.vae.config, toy.unet.config
    assert row["VAE"] == (
        f"{side}×{side}×3 → {grid}×{grid}×{toy.latent_channels} (factor {f}), channels "
        f"{'/'.join(map(str, vae.block_out_channels))}, {vae.layers_per_block} layer per block",
        f"{millions(toy.vae):.2f}",
    )
    attention = [grid >> i for i, kind in enumerate(unet.down_block_types) if kind.startswith("CrossAttn")]
    assert row["UNet"] == (
        f"{grid}×{grid}×{unet.in_channels}, channels {'/'.join(map(str, unet.block_out_channels))}, "
        f"cross-attention at {' and '.join(f'{a}×{a}' for a in attention)}, {unet.layers_per_block} layer per block",
        f"{millions(toy.unet):.2f}",
    )
    text = toy.text_encoder.config
    assert row["text encoder"] == (
        f"hidden {text.hidden_size}, {text.num_hidden_layers} layers, {text.num_attention_heads} heads, "
        f"{toy.tokenizer.model_max_length} tokens",
        f"{millions(toy.text_encoder):.2f}",
    )


def test_weights_fit_the_package_budget():
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size <= 40 * 2**20, f"{size / 2**20:.1f} MiB"
    assert list(DEFAULT_MODEL_DIR.rglob("*.safetensors")), "weights must be safetensors"
    assert (DEFAULT_MODEL_DIR / "README.md").exists(), "the model card is missing"


def test_every_world_word_is_one_token(toy):
    for word in WORDS:
        ids = toy.tokenizer(word).input_ids
        assert len(ids) == 3, (word, toy.tokenizer.convert_ids_to_tokens(ids))
    for name in ("vocab.json", "merges.txt"):  # older transformers load the slow files
        assert (DEFAULT_MODEL_DIR / "tokenizer" / name).exists()


def test_diffusers_diffedit_pipeline_loads_the_folder_and_runs():
    from diffusers import DDIMInverseScheduler, DDIMScheduler, StableDiffusionDiffEditPipeline

    pipe = StableDiffusionDiffEditPipeline.from_pretrained(DEFAULT_MODEL_DIR, safety_checker=None)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.inverse_scheduler = DDIMInverseScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    e = make_edit(123)
    image = Image.fromarray(e.scene.image)
    g = torch.Generator().manual_seed(0)
    mask = pipe.generate_mask(image=image, source_prompt=e.source, target_prompt=e.target, num_maps_per_mask=2, generator=g)
    assert mask.shape == (1, 16, 16) and set(np.unique(mask)) <= {0, 1}
    inv = pipe.invert(prompt=e.source, image=image, num_inference_steps=5, generator=g).latents
    out = pipe(prompt=e.target, mask_image=mask, image_latents=inv, num_inference_steps=5, generator=g, output_type="np")
    assert out.images.shape == (1, 64, 64, 3) and np.isfinite(out.images).all()


def test_cli_edits_with_the_default_model(tmp_path):
    from diffedit_lab.cli import main

    e = make_edit(7)
    src, out, mask = tmp_path / "in.png", tmp_path / "out.png", tmp_path / "mask.png"
    Image.fromarray(e.scene.image).save(src)
    rc = main(["edit", str(src), "--source", e.source, "--target", e.target, "--out", str(out),
               "--mask-out", str(mask), "--steps", "10", "--n", "2", "--seed", "0", "--quiet"])
    assert rc == 0
    assert Image.open(out).size == (64, 64) and Image.open(mask).size == (64, 64)


def test_quick_training_writes_a_loadable_checkpoint(tmp_path):
    from diffusers import StableDiffusionPipeline

    from diffedit_lab.toy.train import main

    main(["--quick", "--out", str(tmp_path / "run"), "--export", str(tmp_path / "model"), "--threads", "1"])
    c = load_components(tmp_path / "model", device="cpu")
    assert c.defaults["inversion_guidance"] == 1.0
    assert c.vae.config.scaling_factor > 0 and c.vae.config.scaling_factor != 0.18215
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "model", safety_checker=None)
    img = pipe("a red circle and a blue square", num_inference_steps=2, height=64, width=64, output_type="np").images
    assert img.shape == (1, 64, 64, 3)
    # resuming from the checkpoints does not redo finished phases
    main(["--quick", "--out", str(tmp_path / "run"), "--threads", "1"])
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3]
    # going on from an exported folder starts from its weights and its step count
    main(["--quick", "--out", str(tmp_path / "run2"), "--init-from", str(tmp_path / "model"),
          "--export", str(tmp_path / "model2"), "--threads", "1"])
    again = load_components(tmp_path / "model2", device="cpu")
    for a, b in zip(c.unet.parameters(), again.unet.parameters()):
        assert torch.equal(a, b)
    assert json.loads((tmp_path / "model2" / "training.json").read_text())["unet_steps"] == 3


def test_small_quality_run_meets_loose_bars(toy):
    """CI's small version of ``python -m diffedit_lab.toy.quality``: a few held-out scenes and
    edits, bars far below the model card's but far above what a broken model reaches."""
    from diffedit_lab.toy.quality import format_table, measure

    report = measure(toy, scenes=8, edits=6, seed=987_654_321, steps=20, batch_size=8, progress=False)
    m = report["metrics"]
    print(format_table(m))
    assert m["t2i_colours_ok"] >= 0.25
    assert m["mask_iou"] >= 0.2
    assert m["background_psnr"] >= 25.0
    assert m["untouched_kept"] >= 0.5
    assert m["edit_success"] >= 1 / 6
