"""Held-out shapes-world edits written in PIE-Bench's format, so that the bench's ``--dataset``
path (real PIE-Bench) and its direct path (the shapes world) are tested on the same files.

    python -m diffedit_lab.toy.export_bench DIR [--edits N] [--seed S]

Writes ``DIR/mapping_file.json`` and ``DIR/annotation_images/<kind>/<id>.png`` for the edits the
quality bench uses (:func:`~diffedit_lab.toy.quality.held_out_edits` from the bench's seed: half
shape changes, PIE-Bench type 1 "change object", half colour changes, type 6 "change attribute
(color)"). Per id: ``image_path``, ``original_prompt`` and ``editing_prompt`` with the changed
words in ``[...]``, ``editing_instruction``, ``editing_type_id``, ``blended_word``, ``mask`` — the
true edited region, run-length encoded as PIE-Bench does (:func:`~diffedit_lab.bench.pie.mask_encode`)
at the image's own size — plus two keys of ours: ``mask_border: false`` (decode without
PIE-Bench's forced border) and ``shapes_world`` (the edit's seed and kind, so the bench can
rebuild it and run the pixel checker).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image

from ..bench.pie import bracket_changes, mask_encode
from .quality import EDIT_SEED_OFFSET, held_out_edits

BENCH_SEED = 555_000_000  # the quality bench's first held-out seed (diffedit_lab.bench.quality_run)
TYPE_IDS = {"shape": "1", "colour": "6"}


def export(folder: str | Path, edits: int = 100, seed: int = BENCH_SEED) -> Path:
    """Write ``edits`` held-out edits into ``folder``; returns the mapping file's path."""
    if edits < 1:
        raise ValueError(f"--edits must be at least 1, got {edits}.")
    folder = Path(folder)
    mapping = {}
    for i, e in enumerate(held_out_edits(edits, seed)):
        key = f"{i:012d}"
        rel = f"{TYPE_IDS[e.kind]}_{e.kind}/{key}.png"
        path = folder / "annotation_images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(e.scene.image).save(path)  # PNG: lossless, the bench reads the same pixels
        original, editing = bracket_changes(e.source, e.target)
        old, new = e.scene.objects[e.index], e.target_scene.objects[e.index]
        mapping[key] = dict(
            image_path=rel, original_prompt=original, editing_prompt=editing,
            editing_instruction=f"Change the {old.name} into a {new.name}",
            editing_type_id=TYPE_IDS[e.kind], blended_word=f"{old.name} {new.name}",
            mask=mask_encode(e.mask), mask_border=False,
            shapes_world=dict(seed=seed + EDIT_SEED_OFFSET + i, kind=e.kind),
        )
    out = folder / "mapping_file.json"
    out.write_text(json.dumps(mapping, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffedit_lab.toy.export_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="output folder (mapping_file.json, annotation_images/)")
    p.add_argument("--edits", type=int, default=100, help="held-out edits, half shape, half colour (100)")
    p.add_argument("--seed", type=int, default=BENCH_SEED, help="first held-out seed (the quality bench's)")
    a = p.parse_args(argv)
    try:
        path = export(a.folder, a.edits, a.seed)
    except ValueError as err:
        p.error(str(err))
    print(f"wrote {a.edits} edits to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
