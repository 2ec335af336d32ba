"""Benchmarks of diffedit-lab, one subcommand each (``python -m diffedit_lab.bench <name> --help``):

* ``speed`` (:mod:`diffedit_lab.bench.speed`): time and memory against diffusers'
  ``StableDiffusionDiffEditPipeline`` on the same model and settings;
* ``quality`` (:mod:`diffedit_lab.bench.quality`): the paper's edit trade-off on the shapes world.
"""

COMMANDS = {
    "speed": ("diffedit_lab.bench.speed", "time and memory against diffusers' DiffEdit pipeline"),
    "quality": ("diffedit_lab.bench.quality", "the paper's edit trade-off on the shapes world"),
}
