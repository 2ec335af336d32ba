"""PIE-Bench's format: masks survive the run-length encoding exactly (odd sizes too), the decoder
is PIE-Bench's (runs clipped, border set), the export writes a folder the reader reads back, and
the unedited-region metrics are PIE-Bench's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffedit_lab.bench import pie


def reference_decode(encoded, shape):
    """PIE-Bench's evaluation/evaluate.py ``mask_decode``, loop for loop (without its border)."""
    length = shape[0] * shape[1]
    flat = np.zeros((length,))
    for i in range(0, len(encoded), 2):
        for j in range(min(encoded[i + 1], length - encoded[i])):
            flat[encoded[i] + j] = 1
    return flat.reshape(shape[0], shape[1])


@pytest.mark.parametrize("shape", [(512, 512), (64, 64), (7, 13), (1, 1), (33, 5)])
def test_round_trip_is_exact(shape):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    for density in (0.0, 0.1, 0.5, 1.0):
        m = rng.random(shape) < density
        enc = pie.mask_encode(m)
        assert all(isinstance(v, int) for v in enc) and len(enc) % 2 == 0
        assert np.array_equal(pie.mask_decode(enc, shape, border=False), m)
        assert np.array_equal(reference_decode(enc, shape).astype(bool), m)  # PIE-Bench reads the same mask


def test_encoding_by_hand_and_pie_bench_border():
    m = np.zeros((3, 4), bool)
    m[0, 1:3] = True
    m[1, 3] = m[2, 0] = True  # one run across the row end: flat 7, 8
    assert pie.mask_encode(m) == [1, 2, 7, 2]
    d = pie.mask_decode([5, 1], (3, 4))  # PIE-Bench's default: the border is set
    assert d[1, 1] and d[0].all() and d[-1].all() and d[:, 0].all() and d[:, -1].all() and not d[1, 2]
    assert pie.mask_decode([10, 99], (3, 4), border=False).sum() == 2  # a run is clipped at the end
    with pytest.raises(ValueError, match="pairs"):
        pie.mask_decode([1, 2, 3], (3, 4))
    with pytest.raises(ValueError, match="outside"):
        pie.mask_decode([12, 1], (3, 4))


def test_brackets_mark_the_changed_words():
    assert pie.bracket_changes("a red circle and a blue square", "a green circle and a blue square") == (
        "a [red] circle and a blue square", "a [green] circle and a blue square")
    o, e = pie.bracket_changes("a red circle", "a red triangle")
    assert (o, e) == ("a red [circle]", "a red [triangle]") and pie.plain(e) == "a red triangle"


def test_unedited_metrics_are_pie_benchs(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    y = x.copy()
    y[mask] = 255 - y[mask]  # changed only inside the edited region
    same = pie.unedited_metrics(x, y, mask)
    assert same == dict(psnr_unedited=100.0, mse_unedited=0.0, ssim_unedited=pytest.approx(1.0))
    z = x.copy()
    z[0, 0] = (int(z[0, 0, 0]) + 51) % 256, z[0, 0, 1], z[0, 0, 2]  # one channel of one unedited pixel
    got = pie.unedited_metrics(x, z, mask)
    mse = ((int(z[0, 0, 0]) - int(x[0, 0, 0])) / 255) ** 2 / (16 * 16 * 3)  # over the whole image, as theirs
    assert got["mse_unedited"] == pytest.approx(mse) and got["psnr_unedited"] == pytest.approx(10 * np.log10(1 / mse))
    assert got["ssim_unedited"] < 1.0
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty torch hub: no LPIPS backbone
    assert set(pie.learned_metrics("none")) == {"lpips", "clip_score"}
    assert all(v.startswith("skipped: ") for v in pie.learned_metrics("none").values())  # CLIP off, LPIPS not here


def test_export_then_read_gives_the_same_edits(tmp_path):
    from diffedit_lab.bench.quality_run import BENCH_SEED
    from diffedit_lab.toy import export_bench
    from diffedit_lab.toy.quality import held_out_edits

    assert export_bench.BENCH_SEED == BENCH_SEED
    assert export_bench.main([str(tmp_path), "--edits", "4", "--world", "classic"]) == 0
    mapping = json.loads((tmp_path / "mapping_file.json").read_text())
    assert list(mapping) == [f"{i:012d}" for i in range(4)]
    first = mapping["000000000000"]
    assert first["editing_type_id"] == "1" and mapping["000000000001"]["editing_type_id"] == "6"
    assert "[" in first["editing_prompt"] and "[" in first["original_prompt"]
    read = pie.read_dataset(tmp_path)
    for got, want in zip(read, held_out_edits(4, BENCH_SEED), strict=True):
        assert np.array_equal(got.scene.image, want.scene.image) and np.array_equal(got.mask, want.mask)
        assert (got.source, got.target, got.kind) == (want.source, want.target, want.kind)
    # without our keys it is a plain PIE-Bench entry: PIE-Bench's border, the type's name
    for item in mapping.values():
        del item["shapes_world"], item["mask_border"]
    (tmp_path / "mapping_file.json").write_text(json.dumps(mapping))
    plain = pie.read_dataset(tmp_path)
    assert plain[0].kind == "change object" and plain[1].kind == "change attribute (color)" and plain[0].edit is None
    assert plain[0].mask[0].all() and np.array_equal(plain[0].mask[1:-1, 1:-1], read[0].mask[1:-1, 1:-1])


def test_export_then_read_rich_edits_of_every_kind(tmp_path):
    from diffedit_lab.bench.quality_run import BENCH_SEED
    from diffedit_lab.toy import export_bench
    from diffedit_lab.toy.quality import held_out_edits
    from diffedit_lab.toy.world import KINDS

    assert export_bench.main([str(tmp_path), "--edits", "6", "--world", "rich", "--kinds", *KINDS]) == 0
    mapping = json.loads((tmp_path / "mapping_file.json").read_text())
    want = held_out_edits(6, BENCH_SEED, world="rich", kinds=KINDS)
    assert [m["editing_type_id"] for m in mapping.values()] == [export_bench.TYPE_IDS[e.kind] for e in want]
    assert [pie.EDIT_TYPES[m["editing_type_id"]] for m in mapping.values()] == [
        "change attribute (color)", "change object", "change attribute (content)", "change background",
        "delete object", "change style"]
    for got, e in zip(pie.read_dataset(tmp_path), want, strict=True):
        assert got.kind == e.kind and got.scene.world == "rich" and np.array_equal(got.scene.image, e.scene.image)
        assert np.array_equal(got.mask, e.mask) and (got.source, got.target) == (e.source, e.target)
    remove = mapping["000000000004"]
    assert remove["editing_instruction"].startswith("Remove the ") and remove["blended_word"] in want[4].source


def test_bad_folders_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_bench"):
        pie.read_dataset(tmp_path)
    (tmp_path / "mapping_file.json").write_text(json.dumps({"1": dict(image_path="x.png", original_prompt="a",
                                                                     editing_prompt="b", editing_type_id="0",
                                                                     mask=[])}))
    with pytest.raises(FileNotFoundError, match="x.png"):
        pie.read_dataset(tmp_path)
    with pytest.raises(SystemExit):
        from diffedit_lab.toy import export_bench

        export_bench.main([str(tmp_path / "o"), "--edits", "0"])
