"""Learned metrics of the bench (issue 15): PIE-Bench's CLIP score, 100·max(cos, 0), computed when
the CLIP model is on the machine (here a tiny random CLIP saved to a folder), and skipped with the
reason — nothing downloaded — when it is not; LPIPS skipped with the reason when its weights are not
here (LPIPS computed: tests/test_bench_lpips.py)."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from diffedit_lab.bench import pie

from conftest import quick_pie_bench

TOKENIZER = Path(pie.__file__).resolve().parents[1] / "toy" / "model" / "tokenizer"  # a CLIPTokenizer


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    """A tiny random CLIPModel + CLIPProcessor saved to a folder (--clip-model DIR)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(TOKENIZER), local_files_only=True)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    model = CLIPModel(config).eval()
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    folder = tmp_path_factory.mktemp("tiny_clip")
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(folder)
    return folder


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    attempts = []

    def refuse(self, *args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, *a))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return attempts


def hand_score(folder: Path, image: np.ndarray, text: str) -> float:
    """100·max(cos, 0) from the model's own towers, computed without ClipScore."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(str(folder), local_files_only=True).eval()
    proc = CLIPProcessor.from_pretrained(str(folder), local_files_only=True)
    inputs = proc(text=[text], images=[image], return_tensors="pt", padding=True)
    cut = model.config.text_config.max_position_embeddings  # torchmetrics' CLIPScore cuts a longer text
    with torch.no_grad():
        t = model.text_projection(model.text_model(input_ids=inputs["input_ids"][:, :cut],
                                                   attention_mask=inputs["attention_mask"][:, :cut]).pooler_output)
        v = model.visual_projection(model.vision_model(pixel_values=inputs["pixel_values"]).pooler_output)
    cos = float(torch.nn.functional.cosine_similarity(t, v)[0])
    return 100.0 * max(cos, 0.0)


def images():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (48, 40, 3), dtype=np.uint8) for _ in range(3)]


@pytest.mark.filterwarnings("ignore:.*max_length.*is ignored")  # the hand computation's processor call
def test_clip_score_is_pie_benchs_formula(tiny_clip, no_network):
    scorer = pie.load_clip(tiny_clip)
    texts = ["a red circle", "a blue square on a green background", "a [yellow] triangle"]
    scores = [[scorer(x, t) for t in texts] for x in images()]
    for x, row in zip(images(), scores):
        for t, s in zip(texts, row):
            assert 0.0 <= s <= 100.0
            assert s == pytest.approx(hand_score(tiny_clip, x, pie.plain(t)), abs=1e-4)  # brackets removed
            assert scorer(x, t) == s  # deterministic
    assert len({round(s, 6) for row in scores for s in row}) > 1  # the prompt and the image matter
    assert not no_network


def test_clip_score_clamps_at_zero_and_masks_the_edited_region(tiny_clip):
    scorer = pie.load_clip(tiny_clip)
    x, text = images()[0], "a red circle"
    c = scorer.cosine(x, text)
    assert c != 0.0
    flipped = pie.load_clip(tiny_clip)
    with torch.no_grad():
        flipped.model.text_projection.weight.neg_()  # E_txt → −E_txt: cos → −cos
    assert flipped.cosine(x, text) == pytest.approx(-c, abs=1e-6)
    assert sorted([scorer(x, text), flipped(x, text)]) == pytest.approx([0.0, 100 * abs(c)], abs=1e-4)
    mask = np.zeros(x.shape[:2], bool)
    mask[10:30, 5:25] = True
    kept = np.uint8(x * mask[..., None])  # PIE-Bench: the image times the mask, as uint8
    assert scorer(x, text, mask) == pytest.approx(100 * max(scorer.cosine(kept, text), 0.0))
    assert scorer.cosine(kept, text) != pytest.approx(c)  # the masked image is another image
    assert math.isnan(scorer(x, text, np.zeros_like(mask)))  # as theirs: no edited region, NaN


def test_rows_and_per_edit_type_report_get_the_clip_score(tiny_clip):
    from types import SimpleNamespace

    from diffedit_lab.bench.quality_report import report
    from diffedit_lab.bench.quality_run import Job, _row

    xs = images()
    mask = np.zeros((48, 40), bool)
    mask[8:20, 8:20] = True
    edits = [pie.DatasetEdit(str(i), SimpleNamespace(image=xs[i]), "a cat", "a dog", mask, kind)
             for i, kind in enumerate(["change object", "change object", "change style"])]
    outs = [xs[(i + 1) % 3] for i in range(3)]
    rows = [_row(Job("sdedit", 0.8), e, i, o, None, clip_model=str(tiny_clip)) for i, (e, o) in
            enumerate(zip(edits, outs))]
    scorer = pie.clip_scorer(str(tiny_clip))
    for e, o, r in zip(edits, outs, rows):
        assert r["clip_score"] == pytest.approx(scorer(o, "a dog"))
        assert r["clip_score_edited"] == pytest.approx(scorer(o, "a dog", e.mask))
    settings = dict(ablation_r=0.8, n=5, threshold=0.5, n_values=(5,), thresholds=(0.5,))
    res = report(rows, settings, {}, {}, {})
    assert res["methods"]["sdedit"]["0.8"]["clip_score"] == pytest.approx(np.mean([r["clip_score"] for r in rows]))
    objects = res["by_kind"]["change object"]["sdedit"]["0.8"]
    assert objects["clip_score_edited"] == pytest.approx(np.mean([r["clip_score_edited"] for r in rows[:2]]))
    assert pie.learned_metrics(str(tiny_clip))["clip_score"].startswith(f"computed: {tiny_clip}")
    skipped = _row(Job("sdedit", 0.8), edits[0], 0, outs[0], None, clip_model="none")
    assert "clip_score" not in skipped and "clip_score" not in report([skipped], settings, {}, {}, {})["methods"]["sdedit"]["0.8"]


def test_missing_clip_is_skipped_with_the_reason_and_nothing_is_downloaded(tmp_path, no_network):
    missing = "diffedit-lab-tests/no-such-clip"
    status = pie.learned_metrics(missing)
    assert set(status) == {"lpips", "clip_score"}
    assert status["clip_score"].startswith(f"skipped: {missing} is not on this machine")
    assert "nothing is downloaded" in status["clip_score"]
    assert pie.learned_row(images()[0], "a cat", np.ones((48, 40), bool), missing) == {}
    folder = tmp_path / "not_clip"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    assert pie.learned_metrics(str(folder))["clip_score"].startswith(f"skipped: {folder} ")
    assert pie.learned_metrics("none")["clip_score"] == "skipped: turned off (--clip-model none)"
    assert not no_network


def test_lpips_is_skipped_with_the_exact_reason(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty torch hub: no SqueezeNet file
    backbone = tmp_path / "torch" / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    status = pie.learned_metrics("none")["lpips"]
    assert status.startswith("skipped: ") and f"SqueezeNet 1.1's weights {backbone} are not there" in status
    assert "nothing is downloaded" in status
    assert pie.learned_metrics("none", "none")["lpips"] == "skipped: turned off (--lpips-weights none)"
    assert not no_network


def test_cli_option_reaches_the_run(tiny_clip):
    from diffedit_lab.bench.quality import parse_args, settings_from

    assert settings_from(parse_args([])).clip_model == pie.DEFAULT_CLIP
    assert settings_from(parse_args(["--clip-model", str(tiny_clip)])).clip_model == str(tiny_clip)


def test_quick_bench_on_a_pie_bench_folder_reports_the_clip_score(tiny_clip, tiny_model_dir, pie_bench_folder,
                                                                 tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no LPIPS weights here, whatever this machine has
    res = quick_pie_bench(tiny_model_dir, pie_bench_folder, tmp_path / "out", "--clip-model", str(tiny_clip))
    assert res["settings"]["clip_model"] == str(tiny_clip)
    assert res["settings"]["learned_metrics"]["clip_score"].startswith("computed: ")
    assert res["settings"]["learned_metrics"]["lpips"].startswith("skipped: ")
    rows = [json.loads(line) for line in (tmp_path / "out" / "rows.jsonl").read_text().splitlines()]
    assert rows and all(0 <= r["clip_score"] <= 100 and 0 <= r["clip_score_edited"] <= 100 for r in rows)
    assert not any("lpips_unedited" in r for r in rows) and "lpips_unedited" not in res["methods"]["diffedit"]["0.8"]
    for kind, methods in res["by_kind"].items():
        mine = [r["clip_score"] for r in rows if r["kind"] == kind and r["method"] == "diffedit" and r["r"] == 0.8
                and r["variant"] is None]
        assert methods["diffedit"]["0.8"]["clip_score"] == pytest.approx(np.mean(mine))
