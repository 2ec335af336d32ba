"""EditSettings: one name per quantity, the paper → model → caller order, checked once where
built; the deprecated names warn at the caller; embedding cache keys never collide."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from diffedit_lab import EditSession, EditSettings, edit
from diffedit_lab.edit import _key


def test_paper_values_then_model_then_caller(tiny_components):
    assert EditSettings().threshold == 0.5 and EditSettings().encoding_ratio == 0.8
    c = dataclasses.replace(tiny_components, defaults={"threshold": 0.9, "mask_strength": 0.7, "steps": 20})
    s = EditSettings.for_model(c, steps=8, n=None)  # None: not given
    assert (s.threshold, s.mask_noise, s.steps, s.n) == (0.9, 0.7, 8, 10)
    assert s.replace(threshold=0.3).threshold == 0.3 and s.threshold == 0.9  # frozen: a copy
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.threshold = 0.1


@pytest.mark.parametrize("field, value, message", [
    ("threshold", 1.0, r"`threshold` must be a number in \[0, 1\)"),
    ("threshold", -0.1, r"`threshold` must be a number in \[0, 1\)"),
    ("mask_noise", 0, r"`mask_noise` must be a number in \(0, 1\]"),
    ("encoding_ratio", 1.5, r"`encoding_ratio` must be a number in \(0, 1\]"),
    ("n", 0, r"`n` must be an integer ≥ 1"),
    ("steps", 2.5, r"`steps` must be an integer ≥ 1"),
    ("clamp_ratio", 0.0, r"`clamp_ratio` must be a finite number > 0"),
    ("guidance", -1.0, r"`guidance` must be a finite number ≥ 0"),
    ("fill_holes", "yes", r"`fill_holes` must be True or False"),
    ("rescale", "minmax", r"^`rescale` must be 'mean' \(diffusers: divide by κ·mean D\) or 'range' \(the paper: "
                          r"min–max to \[0, 1\]\), got 'minmax'\.$"),
    ("rescale", 0, r"^`rescale` must be 'mean' .* got 0\.$"),
])
def test_bad_values_fail_in_the_constructor(field, value, message):
    with pytest.raises(ValueError, match=message):
        EditSettings(**{field: value})
    with pytest.raises(ValueError, match=message):
        EditSettings().replace(**{field: value})


def test_a_change_is_built_once_and_its_types_count():
    s = EditSettings()
    assert s.replace(steps=4) is s.replace(steps=4)  # built and checked once
    with pytest.raises(ValueError, match="`steps` must be an integer"):
        s.replace(steps=4.0)  # equal to 4 and hashed alike, but not an integer


def test_a_ratio_must_cover_a_ddim_step():
    with pytest.raises(ValueError, match=r"`encoding_ratio`=0.05 × `steps`=10 covers no DDIM step"):
        EditSettings(encoding_ratio=0.05, steps=10)
    with pytest.raises(ValueError, match=r"`mask_noise`=0.1 × `steps`=5 covers no DDIM step"):
        EditSettings(mask_noise=0.1, steps=5)
    assert EditSettings(encoding_ratio=0.1, steps=10).encoding_ratio == 0.1


def test_a_seed_is_not_a_setting_and_unknown_names_fail(tiny_components):
    with pytest.raises(TypeError, match="a seed is not a setting"):
        EditSettings.for_model(tiny_components, seed=3)
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['thresh'\]"):
        EditSettings.for_model(tiny_components, thresh=0.3)
    bad = dataclasses.replace(tiny_components, defaults={"tau": 0.3})
    with pytest.raises(TypeError, match="diffedit_lab.json"):
        EditSettings.for_model(bad)


def test_old_names_warn_at_the_caller_and_still_work(tiny_components):
    with pytest.warns(DeprecationWarning, match="use `encoding_ratio`") as record:
        s = EditSettings.for_model(tiny_components, strength=0.6, mask_strength=0.4)
    assert (s.encoding_ratio, s.mask_noise) == (0.6, 0.4)
    assert all(w.filename == __file__ for w in record)  # the warning points at this line, not the library
    with pytest.raises(TypeError, match="both `strength` and `encoding_ratio`"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            EditSettings.for_model(tiny_components, strength=0.6, encoding_ratio=0.7)


def test_old_names_in_edit_and_session_warn_here(tiny_components, tiny_image):
    fast = dict(n=1, steps=4, progress=False, seed=0)
    with pytest.warns(DeprecationWarning) as record:
        r = edit(tiny_components, tiny_image, "a red circle", "a blue square", strength=0.5, mask_strength=0.4, **fast)
    record = [w for w in record if w.category is DeprecationWarning]  # the random VAE also warns (round trip)
    assert all(w.filename == __file__ for w in record) and len(record) == 2
    assert r.edit_settings.encoding_ratio == 0.5 and r.mask.mask_noise == 0.4
    session = EditSession(tiny_components, tiny_image)
    with pytest.warns(DeprecationWarning) as record:
        session.run("a red circle", "a blue square", strength=0.5, **fast)
    assert all(w.filename == __file__ for w in record)


def test_cache_keys_depend_on_what_each_step_depends_on():
    s = EditSettings()
    assert s.replace(threshold=0.3).mask_key() == s.mask_key()  # τ only re-thresholds
    assert s.replace(rescale="range").mask_key() == s.mask_key()  # so does the rescale
    assert s.replace(guidance=3.0).mask_key() != s.mask_key()
    assert s.replace(mask_noise=0.6).inversion_key() == s.inversion_key()
    assert s.replace(encoding_ratio=0.5).inversion_key() != s.inversion_key()


def test_embeddings_with_equal_sums_get_different_cache_entries(tiny_components, tiny_image):
    a = torch.zeros(1, 4, 8)
    a[0, 0, 0], a[0, 1, 1] = 1.0, -1.0
    b = a.clone()
    b[0, 0, 0], b[0, 1, 1] = -1.0, 1.0  # the same sum and the same sum of |x|: the old key's two sums
    assert a.sum() == b.sum() and a.abs().sum() == b.abs().sum() and not torch.equal(a, b)
    assert _key(a) != _key(b)
    assert _key(a) == _key(a.clone())
    assert _key(a) != _key(a.double())  # the dtype counts too
    assert _key(a) != _key(a.reshape(1, 8, 4))  # and the shape
    # in a session: a target embedding with two entries swapped has the same two sums (the old
    # key) and gets its own mask (the old key returned the first one's)
    from diffedit_lab import encode_prompt

    session = EditSession(tiny_components, tiny_image)
    q = encode_prompt(tiny_components, "a blue square")
    p = q.clone()
    p[0, 1, 0], p[0, 1, 1] = q[0, 1, 1], q[0, 1, 0]
    assert q.double().sum() == p.double().sum() and q.abs().double().sum() == p.abs().double().sum()
    assert not torch.equal(q, p)
    first = session.mask("a red circle", q, n=1, steps=4, seed=0)
    second = session.mask("a red circle", p, n=1, steps=4, seed=0)
    assert len(session._masks) == 2 and not torch.equal(first.difference, second.difference)


def test_rescale_defaults_to_diffusers_and_comes_from_the_model_then_the_caller(tiny_components):
    assert EditSettings().rescale == "mean" and "rescale" in EditSettings.names()
    c = dataclasses.replace(tiny_components, defaults={"rescale": "range"})
    assert EditSettings.for_model(c).rescale == "range"
    assert EditSettings.for_model(c, rescale="mean").rescale == "mean"
    bad = dataclasses.replace(tiny_components, defaults={"rescale": "max"})
    with pytest.raises(ValueError, match="`rescale` must be 'mean'"):
        EditSettings.for_model(bad)


def test_session_and_edit_take_the_rescale_without_a_new_model_call(tiny_components, tiny_image, monkeypatch):
    import diffedit_lab.mask as mask_module

    session = EditSession(tiny_components, tiny_image)
    kw = dict(n=2, steps=4, seed=0)
    plain = session.mask("a red circle", "a blue square", **kw)
    monkeypatch.setattr(mask_module, "unet_output", None)  # the rescale only re-thresholds the cached D
    ranged = session.mask("a red circle", "a blue square", rescale="range", **kw)
    assert plain.rescale == "mean" and ranged.rescale == "range"
    assert torch.equal(ranged.mask, plain.rethreshold(rescale="range").mask) and not torch.equal(ranged.mask, plain.mask)
    monkeypatch.undo()
    res = edit(tiny_components, tiny_image, "a red circle", "a blue square", rescale="range", progress=False, **kw)
    assert res.edit_settings.rescale == "range" and res.mask.rescale == "range"
    assert torch.equal(res.mask.mask, ranged.mask)


def test_close_is_a_radius_checked_where_it_enters():
    assert EditSettings().close == 0 and EditSettings(close=2).close == 2
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="`close` must be an integer ≥ 0"):
            EditSettings(close=bad)
    assert EditSettings.for_model(type("C", (), {"defaults": {"close": 1}})()).close == 1
