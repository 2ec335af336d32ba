"""The order probe: what a model pays when the caption names its objects right to left."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffedit_lab.toy import order_probe
from diffedit_lab.toy.world import make_scene


def test_reversed_caption_names_the_objects_right_to_left_and_keeps_the_rest():
    scene = next(s for s in (make_scene(i, "rich") for i in range(200))
                 if len(s.objects) == 3 and s.background != "plain")
    names = [o.name for o in sorted(scene.objects, key=lambda o: o.cx)]
    rev = order_probe.reversed_caption(scene)
    assert rev.startswith(" and ".join(f"a {n}" for n in reversed(names)))
    assert rev[rev.index(" on "):] == scene.caption[scene.caption.index(" on "):]
    assert scene.caption.startswith(" and ".join(f"a {n}" for n in names))
    scenes = order_probe.probe_scenes(12)
    assert len(scenes) == 12 and all(order_probe.reversed_caption(s) != s.caption for s in scenes)


class TextBlind(torch.nn.Module):
    """A UNet that never reads the text: it is given zeros for the caption's embeddings."""

    def __init__(self, unet):
        super().__init__()
        self.inner, self.config = unet, unet.config

    def forward(self, z, t, encoder_hidden_states):
        return self.inner(z, t, torch.zeros_like(encoder_hidden_states))


@pytest.mark.filterwarnings("ignore::UserWarning")  # the tiny tokenizer splits the rich words
def test_a_model_blind_to_the_text_pays_nothing_and_one_reading_it_does(tiny_components):
    scenes = order_probe.probe_scenes(6, size=32)  # the tiny model's side
    blind = order_probe.order_gain(dataclasses.replace(tiny_components, unet=TextBlind(tiny_components.unet)),
                                   scenes, timesteps=(300, 700))
    assert all(r["gain"] == 0 and r["share"] == 0 for r in blind.values())
    reading = order_probe.order_gain(tiny_components, scenes, timesteps=(300, 700))
    assert any(abs(r["gain"]) > 1e-6 for r in reading.values())
    assert reading == order_probe.order_gain(tiny_components, scenes, timesteps=(300, 700))  # seeded
    short = order_probe.CAPTIONS["short"]
    assert all(r["gain"] == 0 for r in order_probe.order_gain(
        dataclasses.replace(tiny_components, unet=TextBlind(tiny_components.unet)), scenes, (300,), contrast=short).values())
    assert order_probe.order_gain(tiny_components, scenes, (300,), contrast=short) != order_probe.order_gain(
        tiny_components, scenes, (300,))


def test_the_short_caption_leaves_out_the_rightmost_object():
    for scene in order_probe.probe_scenes(12):
        names = [o.name for o in sorted(scene.objects, key=lambda o: o.cx)]
        short = order_probe.shortened_caption(scene)
        assert short.startswith(" and ".join(f"a {n}" for n in names[:-1]))
        assert f"a {names[-1]}" not in short  # the probe's scenes name each object differently
        tail = scene.caption[len(" and ".join(f"a {n}" for n in names)):]
        assert short.endswith(tail)  # background and time kept


def test_the_built_in_model_reads_the_order_of_its_captions(capsys):
    """The shipped model draws objects in the caption's order (text→image, model card); named in
    reverse, its ε-error rises at mid noise on nearly every scene."""
    order_probe.main(["--scenes", "16", "--threads", "1"])
    out = capsys.readouterr().out
    assert "t 500:" in out
    from diffedit_lab import load_components

    gains = order_probe.order_gain(load_components(), order_probe.probe_scenes(16), timesteps=(500,))
    assert gains[500]["gain"] > 0.2 and gains[500]["share"] > 0.8
    with pytest.raises(SystemExit):
        order_probe.main(["--scenes", "0"])
