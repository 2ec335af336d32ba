"""The CLI's own help example runs, with the default (built-in) model, on a scene that its
source text describes, and makes the edit its target text asks for (issue 18)."""

from __future__ import annotations

import re
import shlex

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow


def help_example() -> list[str]:
    from diffedit_lab.cli import build_parser

    parser = build_parser()
    edit_parser = next(a for a in parser._actions if a.dest == "command").choices["edit"]
    command = re.search(r"(diffedit-lab edit .*?--seed \d+)", edit_parser.epilog).group(1)
    return shlex.split(command)[1:]  # without the program name


def test_the_help_example_runs_and_makes_its_edit(tmp_path, monkeypatch, capsys):
    from diffedit_lab.cli import main
    from diffedit_lab.toy.checker import check_edit
    from diffedit_lab.toy.texts import read_edit
    from diffedit_lab.toy.world import Obj, render

    argv = help_example()
    assert argv[0] == "edit" and "--model" not in argv  # the default model
    source, target = argv[argv.index("--source") + 1], argv[argv.index("--target") + 1]
    a, b = (p.strip() for p in source.removeprefix("a ").split(" and a "))
    scene = render((Obj(a.split()[1], a.split()[0], 18, 18, 10), Obj(b.split()[1], b.split()[0], 44, 42, 10)))
    assert scene.caption == source, "the example's source text describes the scene it is run on"
    monkeypatch.chdir(tmp_path)
    Image.fromarray(scene.image).save(argv[1])
    assert main(argv + ["--quiet"]) == 0, capsys.readouterr().err
    out = np.asarray(Image.open(argv[argv.index("--out") + 1]).convert("RGB"))
    mask = np.asarray(Image.open(argv[argv.index("--mask-out") + 1]))
    assert set(np.unique(mask).tolist()) <= {0, 255} and mask.shape == out.shape[:2]  # black and white, as --help says
    edit = read_edit(scene, source, target).edit
    made, kept = check_edit(out, edit)
    assert made and kept, "the help example's edit is not one the default model can make: pick another"
