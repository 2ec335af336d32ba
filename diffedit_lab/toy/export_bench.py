"""Held-out shapes-world edits written in PIE-Bench's format, so that the bench's ``--dataset``
path (real PIE-Bench) and its direct path (the shapes world) are tested on the same files.

    python -m diffedit_lab.toy.export_bench DIR [--edits N] [--seed S] [--world W] [--kinds K ...]

Writes ``DIR/mapping_file.json`` and ``DIR/annotation_images/<type>_<kind>/<id>.png`` for the
edits the quality bench uses (:func:`~diffedit_lab.toy.quality.held_out_edits` from the bench's
seed, of ``--world`` — default the built-in model's, as the bench's: classic, shape and colour
changes alternating; rich, ``--kinds`` in turn), each with the PIE-Bench type nearest to its kind (:data:`TYPE_IDS`: shape 1 "change object",
size 4 "change attribute (content)", colour 6 "change attribute (color)", remove 3 "delete
object", background 8 "change background", night 9 "change style"). Per id: ``image_path``,
``original_prompt`` and ``editing_prompt`` with the changed words in ``[...]``,
``editing_instruction``, ``editing_type_id``, ``blended_word``, ``mask`` — the true edited region,
run-length encoded as PIE-Bench does (:func:`~diffedit_lab.bench.pie.mask_encode`) at the image's
own size — plus two keys of ours: ``mask_border: false`` (decode without PIE-Bench's forced
border) and ``shapes_world`` (the edit's seed, kind and world, so the bench can rebuild it and run
the pixel checker).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image

from ..bench.pie import bracket_changes, mask_encode
from .quality import EDIT_SEED_OFFSET, held_out_edits
from .world import WORLDS, Edit

BENCH_SEED = 555_000_000  # the quality bench's first held-out seed (diffedit_lab.bench.quality_run)
TYPE_IDS = {"shape": "1", "size": "4", "colour": "6", "remove": "3", "background": "8", "night": "9"}


def instruction(e: Edit) -> tuple[str, str]:
    """PIE-Bench's ``editing_instruction`` and ``blended_word`` for a shapes-world edit."""
    old = e.scene.objects[e.index]
    if e.kind == "remove":
        return f"Remove the {old.name}", old.name
    if e.kind == "background":
        return (f"Change the background from {e.scene.background} to {e.target_scene.background}",
                f"{e.scene.background} {e.target_scene.background}")
    if e.kind == "night":
        return "Make it night", "night"
    new = e.target_scene.objects[e.index]
    return f"Change the {old.name} into a {new.name}", f"{old.name} {new.name}"


def export(folder: str | Path, edits: int = 100, seed: int = BENCH_SEED, world: str | None = None,
           kinds: tuple[str, ...] | None = None) -> Path:
    """Write ``edits`` held-out edits of ``world`` (default: the built-in model's, as the bench's
    default) into ``folder``; returns the mapping file's path."""
    if edits < 1:
        raise ValueError(f"--edits must be at least 1, got {edits}.")
    if world is None:
        from ..models import DEFAULT_MODEL_DIR
        from .texts import folder_world

        world = folder_world(DEFAULT_MODEL_DIR)[0]
    todo = held_out_edits(edits, seed, world=world, kinds=kinds)
    folder = Path(folder)
    mapping = {}
    for i, e in enumerate(todo):
        key = f"{i:012d}"
        rel = f"{TYPE_IDS[e.kind]}_{e.kind}/{key}.png"
        path = folder / "annotation_images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(e.scene.image).save(path)  # PNG: lossless, the bench reads the same pixels
        original, editing = bracket_changes(e.source, e.target)
        text, blended = instruction(e)
        mapping[key] = dict(
            image_path=rel, original_prompt=original, editing_prompt=editing,
            editing_instruction=text, editing_type_id=TYPE_IDS[e.kind], blended_word=blended,
            mask=mask_encode(e.mask), mask_border=False,
            shapes_world=dict(seed=seed + EDIT_SEED_OFFSET + i, kind=e.kind, world=world),
        )
    out = folder / "mapping_file.json"
    out.write_text(json.dumps(mapping, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffedit_lab.toy.export_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="output folder (mapping_file.json, annotation_images/)")
    p.add_argument("--edits", type=int, default=100, help="held-out edits, the kinds in turn (100)")
    p.add_argument("--seed", type=int, default=BENCH_SEED, help="first held-out seed (the quality bench's)")
    p.add_argument("--world", choices=WORLDS, default=None,
                   help="the shapes world (default: the built-in model's, as the bench's default)")
    p.add_argument("--kinds", nargs="+", default=None, metavar="KIND",
                   help="rich world: the kinds in turn (default: every kind a mask can serve)")
    a = p.parse_args(argv)
    try:
        path = export(a.folder, a.edits, a.seed, a.world, tuple(a.kinds) if a.kinds else None)
    except ValueError as err:
        p.error(str(err))
    print(f"wrote {a.edits} edits to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
