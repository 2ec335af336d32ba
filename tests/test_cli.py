"""The command line: ``diffedit-lab edit IMAGE --source … --target … --out …``.

End to end on the tiny random model (``tiny_model_dir``, built by conftest): outputs and masks
are written, nothing is ever overwritten without ``--force`` (the input never), writes are
atomic, and bad input ends with a one-line reason. Most runs are in-process (``main([...])``);
a few go through a real ``python -m diffedit_lab`` process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

import diffedit_lab
from diffedit_lab import EditSettings
from diffedit_lab.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--steps", "4", "--n", "2", "--seed", "0", "--device", "cpu", "--quiet"]


@pytest.fixture()
def workdir(tmp_path, tiny_image):
    """A folder holding only the input image ``in.png`` (32×32)."""
    tiny_image.save(tmp_path / "in.png")
    return tmp_path


def edit_args(workdir: Path, model, *extra: str, out: str = "out.png") -> list[str]:
    return [
        "edit", str(workdir / "in.png"),
        "--source", "a red circle on a blue background",
        "--target", "a green square on a blue background",
        "--out", str(workdir / out),
        "--model", str(model),
        *FAST, *extra,
    ]


def run(capsys, argv) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("diffedit-lab: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ---------------------------------------------------------------- end to end, tiny model
# Two real edits only (each costs seconds on a busy CPU): in-process with --force over an
# existing output, and in a child process into a fresh path (the no-overwrite hard-link path).
def test_edit_writes_image_and_mask_and_force_overwrites(capsys, workdir, tiny_model_dir, monkeypatch):
    import diffedit_lab.models as models

    calls = []
    real_set_threads = models.set_threads
    monkeypatch.setattr(models, "set_threads", lambda *a, **k: calls.append((a, k)) or real_set_threads(*a, **k))
    (workdir / "out.png").write_bytes(b"old")
    code, _, err = run(capsys, edit_args(workdir, tiny_model_dir, "--mask-out", str(workdir / "mask.png"), "--force"))
    assert code == 0, err
    assert calls == [((), {})]  # a few threads for a shared CPU ($DIFFEDIT_THREADS chooses), not one per core
    assert files(workdir) == {"in.png", "out.png", "mask.png"}  # and no temporary file left
    with Image.open(workdir / "out.png") as out, Image.open(workdir / "mask.png") as mask:
        assert out.size == (32, 32)
        assert mask.size == (32, 32)
        assert mask.mode == "L"
    umask = os.umask(0)
    os.umask(umask)
    for name in ("out.png", "mask.png"):
        assert (workdir / name).stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_subprocess_end_to_end(tmp_path, tiny_image, tiny_model_dir):
    tiny_image.save(tmp_path / "in.png")
    argv = [sys.executable, "-m", "diffedit_lab"] + edit_args(tmp_path, tiny_model_dir, out="edited.png")
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout == ""  # --quiet
    assert files(tmp_path) == {"in.png", "edited.png"}
    with Image.open(tmp_path / "edited.png") as out:
        assert out.size == (32, 32)


# ---------------------------------------------------------------- never overwrite
def test_refuses_to_overwrite_without_force(capsys, workdir, tiny_model_dir):
    (workdir / "out.png").write_bytes(b"keep me")
    code, _, err = run(capsys, edit_args(workdir, tiny_model_dir))
    assert_one_line_error(code, err, "--force")
    assert (workdir / "out.png").read_bytes() == b"keep me"


def test_refuses_to_overwrite_an_existing_mask_without_force(capsys, workdir, tiny_model_dir):
    (workdir / "mask.png").write_bytes(b"keep me")
    code, _, err = run(capsys, edit_args(workdir, tiny_model_dir, "--mask-out", str(workdir / "mask.png")))
    assert_one_line_error(code, err, "--force")
    assert files(workdir) == {"in.png", "mask.png"}
    assert (workdir / "mask.png").read_bytes() == b"keep me"


@pytest.mark.parametrize("option", ["--out", "--mask-out"])
@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink"])
def test_refuses_to_write_over_the_input_even_with_force(capsys, workdir, tiny_model_dir, option, spelling):
    original = (workdir / "in.png").read_bytes()
    (workdir / "sub").mkdir()
    target = {
        "same": workdir / "in.png",
        "dotdot": workdir / "sub" / ".." / "in.png",
        "symlink": workdir / "link.png",
    }[spelling]
    if spelling == "symlink":
        target.symlink_to(workdir / "in.png")
    argv = edit_args(workdir, tiny_model_dir, "--force")
    if option == "--out":
        argv[argv.index("--out") + 1] = str(target)
    else:
        argv += ["--mask-out", str(target)]
    code, _, err = run(capsys, argv)
    assert_one_line_error(code, err, "input image")
    assert (workdir / "in.png").read_bytes() == original
    assert not (workdir / "out.png").exists()


def test_refuses_mask_out_equal_to_out(capsys, workdir, tiny_model_dir):
    code, _, err = run(capsys, edit_args(workdir, tiny_model_dir, "--mask-out", str(workdir / "out.png")))
    assert_one_line_error(code, err, "same file")


# ---------------------------------------------------------------- bad input: one line, no traceback
BAD_OPTIONS = {
    "steps zero": (["--steps", "0"], "--steps"),
    "steps not int": (["--steps", "ten"], "--steps"),
    "strength above one": (["--strength", "1.5"], "--strength"),
    "strength zero": (["--strength", "0"], "--strength"),
    "mask strength negative": (["--mask-strength", "-0.1"], "--mask-strength"),
    "threshold above one": (["--threshold", "2"], "--threshold"),
    "threshold one": (["--threshold", "1"], "[0, 1)"),  # the library's range: τ = 1 keeps nothing
    "n zero": (["--n", "0"], "--n"),
    "clamp ratio zero": (["--clamp-ratio", "0"], "--clamp-ratio"),
    "rescale unknown": (["--rescale", "minmax"], "--rescale"),
    "close negative": (["--close", "-1"], "--close"),
    "close not whole": (["--close", "1.5"], "--close"),
    "guidance nan": (["--guidance", "nan"], "--guidance"),
    "inversion guidance negative": (["--inversion-guidance", "-1"], "--inversion-guidance"),
    "seed negative": (["--seed", "-1"], "--seed"),
    "unknown option": (["--colour", "red"], "--colour"),
    "bad device": (["--device", "toaster"], "--device"),
}


@pytest.mark.parametrize("extra, word", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_bad_option_values(capsys, workdir, tiny_model_dir, extra, word):
    code, _, err = run(capsys, edit_args(workdir, tiny_model_dir, *extra))
    assert code == 2
    assert_one_line_error(code, err, word)
    assert files(workdir) == {"in.png"}


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_target(capsys, workdir, tiny_model_dir, text):
    argv = edit_args(workdir, tiny_model_dir)
    argv[argv.index("--target") + 1] = text
    code, _, err = run(capsys, argv)
    assert_one_line_error(code, err, "--target", "empty")
    assert files(workdir) == {"in.png"}


def test_missing_required_option(capsys, workdir, tiny_model_dir):
    argv = edit_args(workdir, tiny_model_dir)
    del argv[argv.index("--target") : argv.index("--target") + 2]
    code, _, err = run(capsys, argv)
    assert_one_line_error(code, err, "--target")


def test_missing_image(capsys, workdir, tiny_model_dir):
    (workdir / "in.png").unlink()
    code, _, err = run(capsys, edit_args(workdir, tiny_model_dir))
    assert_one_line_error(code, err, "in.png", "no such file")
    assert files(workdir) == set()


def test_image_is_a_folder(capsys, workdir, tiny_model_dir):
    argv = edit_args(workdir, tiny_model_dir)
    argv[1] = str(workdir)
    code, _, err = run(capsys, argv)
    assert_one_line_error(code, err, "not a file")


def test_unreadable_image(capsys, workdir, tiny_model_dir):
    (workdir / "in.png").write_text("this is not a PNG")
    code, _, err = run(capsys, edit_args(workdir, tiny_model_dir))
    assert_one_line_error(code, err, "in.png")
    assert files(workdir) == {"in.png"}


@pytest.mark.parametrize("model", ["missing-folder", "empty-folder", "nobody/no-such-model"])
def test_unknown_model(capsys, workdir, model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if model == "empty-folder":
        (workdir / model).mkdir()
    path = model if "/" in model else workdir / model
    code, _, err = run(capsys, edit_args(workdir, path))
    assert_one_line_error(code, err, str(model))
    assert files(workdir) - {"empty-folder"} == {"in.png"}


@pytest.mark.parametrize("out, word", [("out.xyz", ".xyz"), ("no/such/dir/out.png", "no such folder"), ("", "folder")])
def test_bad_output_path(capsys, workdir, tiny_model_dir, out, word):
    code, _, err = run(capsys, edit_args(workdir, tiny_model_dir, out=out))
    assert_one_line_error(code, err, word)
    assert files(workdir) == {"in.png"}


def test_bad_input_in_a_real_process_prints_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "diffedit_lab", "edit", str(tmp_path / "nothing.png"),
         "--source", "a cat", "--target", "a dog", "--out", str(tmp_path / "out.png")],
        capture_output=True, text=True, env=_env(), timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"diffedit-lab: error: {tmp_path / 'nothing.png'}: no such file"]
    assert proc.stdout == ""


# ---------------------------------------------------------------- what the library receives
class Recorder:
    """Stands in for load_components/edit/load_image and records how they were called."""

    def __init__(self, size=(32, 32)):
        self.size = size
        self.calls = {}

    def load_image(self, path):
        self.calls["load_image"] = path
        return Image.open(path).convert("RGB")

    def load_components(self, model, **kwargs):
        self.calls["load_components"] = (model, kwargs)
        return "components"

    def edit(self, components, image, source, target, settings, **kwargs):
        self.calls["edit"] = (components, image.size, source, target, dict(settings=settings, **kwargs))
        mask = SimpleNamespace(to_image=lambda: Image.new("L", self.size, 255))
        return SimpleNamespace(image=Image.new("RGB", self.size, (0, 255, 0)), mask=mask)


@pytest.fixture()
def recorder(monkeypatch):
    rec = Recorder()
    for name in ("load_image", "load_components", "edit"):
        monkeypatch.setattr(diffedit_lab, name, getattr(rec, name), raising=False)
    return rec




def test_unset_options_are_passed_as_none(capsys, workdir, recorder):
    argv = ["edit", str(workdir / "in.png"), "--source", "a cat", "--target", "a dog", "--out", str(workdir / "o.png")]
    code, out, err = run(capsys, argv)
    assert code == 0, err
    assert recorder.calls["load_components"] == (None, {"device": None})
    components, size, source, target, kwargs = recorder.calls["edit"]
    assert (components, size, source, target) == ("components", (32, 32), "a cat", "a dog")
    assert kwargs.pop("inversion_prompt", None) is None  # absent or None: the library's default
    seed = kwargs.pop("seed")  # drawn by the CLI, and printed so that the edit can be repeated
    assert isinstance(seed, int) and 0 <= seed < 2**64
    assert kwargs == {"settings": EditSettings(), "progress": True}  # the paper's (no model file)
    assert "o.png" in err  # "wrote …" unless --quiet
    assert f"--seed {seed}" in err
    assert out == ""


def test_options_are_passed_through(capsys, workdir, recorder):
    argv = ["edit", str(workdir / "in.png"), "--source", "a cat", "--target", "a dog", "--out", str(workdir / "o.png"),
            "--model", "some/model", "--device", "cpu", "--seed", "7", "--steps", "12", "--strength", "0.6",
            "--mask-strength", "0.4", "--n", "3", "--threshold", "0.3", "--clamp-ratio", "2.5", "--guidance", "5",
            "--inversion-prompt", "", "--inversion-guidance", "1", "--no-fill-holes", "--quiet"]
    code, out, err = run(capsys, argv)
    assert code == 0, err
    assert (out, err) == ("", "")  # --quiet
    assert recorder.calls["load_components"] == ("some/model", {"device": "cpu"})
    kwargs = recorder.calls["edit"][-1]
    settings = EditSettings(n=3, mask_noise=0.4, clamp_ratio=2.5, threshold=0.3, fill_holes=False, encoding_ratio=0.6,
                            steps=12, guidance=5.0, inversion_guidance=1.0)
    assert kwargs == dict(settings=settings, inversion_prompt="", seed=7, progress=False)
    # today's names of the two strengths mean the same
    argv[argv.index("--strength")], argv[argv.index("--mask-strength")] = "--encoding-ratio", "--mask-noise"
    argv[argv.index("--out") + 1] = str(workdir / "o2.png")
    assert run(capsys, argv)[0] == 0 and recorder.calls["edit"][-1]["settings"] == settings


def test_a_failing_write_leaves_no_partial_output(capsys, workdir, recorder, monkeypatch):
    """The disk fills up while the mask is saved: neither output nor any temporary file remains."""
    real_save = Image.Image.save
    calls = []

    def failing_save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 2:
            fp.write(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    code, _, err = run(capsys, ["edit", str(workdir / "in.png"), "--source", "a", "--target", "b",
                                "--out", str(workdir / "o.png"), "--mask-out", str(workdir / "m.png")])
    assert_one_line_error(code, err, "No space left on device")
    assert len(calls) == 2
    assert files(workdir) == {"in.png"}


def test_interrupted_edit_writes_nothing(capsys, workdir, recorder, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(diffedit_lab, "edit", interrupted)
    code, _, err = run(capsys, ["edit", str(workdir / "in.png"), "--source", "a", "--target", "b",
                                "--out", str(workdir / "o.png")])
    assert code == 130
    assert err.strip() == "diffedit-lab: interrupted"
    assert files(workdir) == {"in.png"}


def test_output_that_appears_during_the_edit_is_not_overwritten(capsys, workdir, recorder, monkeypatch):
    """Checked before the (long) edit and again, atomically, when the result is put in place."""
    real_edit = recorder.edit

    def edit_while_someone_writes(*args, **kwargs):
        (workdir / "o.png").write_bytes(b"theirs")
        return real_edit(*args, **kwargs)

    monkeypatch.setattr(diffedit_lab, "edit", edit_while_someone_writes)
    code, _, err = run(capsys, ["edit", str(workdir / "in.png"), "--source", "a", "--target", "b",
                                "--out", str(workdir / "o.png")])
    assert_one_line_error(code, err, "--force")
    assert (workdir / "o.png").read_bytes() == b"theirs"
    assert files(workdir) == {"in.png", "o.png"}


def test_library_value_error_is_one_line(capsys, workdir, recorder, monkeypatch):
    def bad(*args, **kwargs):
        raise ValueError("strength=0.01 gives no DDIM step at steps=10:\nraise --steps")

    monkeypatch.setattr(diffedit_lab, "edit", bad)
    code, _, err = run(capsys, ["edit", str(workdir / "in.png"), "--source", "a", "--target", "b",
                                "--out", str(workdir / "o.png")])
    assert_one_line_error(code, err, "no DDIM step", "raise --steps")
    assert files(workdir) == {"in.png"}


# ---------------------------------------------------------------- help, version, entry points
def test_python_m_help_works():
    proc = subprocess.run([sys.executable, "-m", "diffedit_lab", "--help"], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "edit" in proc.stdout and "info" in proc.stdout
    assert proc.stdout.startswith("usage: diffedit-lab")


def test_edit_help_lists_every_option(capsys):
    code, out, _ = run(capsys, ["edit", "--help"])
    assert code == 0
    for option in ("--source", "--target", "--out", "--mask-out", "--model", "--seed", "--steps", "--strength",
                   "--mask-strength", "--n", "--threshold", "--clamp-ratio", "--guidance", "--inversion-prompt",
                   "--inversion-guidance", "--device", "--force", "--quiet", "--rescale", "--close"):
        assert option in out, option


def test_no_command_prints_usage_and_fails(capsys):
    code, _, err = run(capsys, [])
    assert code == 2
    assert "usage: diffedit-lab" in err


def test_version(capsys):
    code, out, _ = run(capsys, ["--version"])
    assert code == 0
    assert out.startswith("diffedit-lab ")


def test_info(capsys):
    code, out, _ = run(capsys, ["info"])
    assert code == 0
    assert "torch" in out and "default model" in out


def test_console_script_is_declared():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["scripts"]["diffedit-lab"]
    assert target == "diffedit_lab.cli:main"
    module, _, attr = target.partition(":")
    assert getattr(__import__(module, fromlist=[attr]), attr) is main


def test_console_script_runs_when_installed():
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("diffedit-lab")
    except PackageNotFoundError:
        pytest.skip("diffedit-lab is not installed in this environment (make test installs it)")
    [entry] = [e for e in dist.entry_points if e.group == "console_scripts" and e.name == "diffedit-lab"]
    assert entry.value == "diffedit_lab.cli:main"
    script = Path(sys.executable).with_name("diffedit-lab")
    if not script.exists():
        pytest.skip(f"no {script} (installed elsewhere)")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: diffedit-lab")


def _env() -> dict:
    """The environment for a child Python: this checkout importable, no hub."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    env.pop("DIFFEDIT_DEBUG", None)
    return env


# ---------------------------------------------------------------- issue 16: checked before the model loads
def _argv(workdir: Path, *extra: str, out: str = "o.png") -> list[str]:
    return ["edit", str(workdir / "in.png"), "--source", "a cat", "--target", "a dog",
            "--out", str(workdir / out), *extra]


def test_empty_source_is_accepted(capsys, workdir, recorder):
    """The library and the README allow an empty reference text R (the unconditional prediction)."""
    code, _, err = run(capsys, _argv(workdir, "--quiet")[:3] + ["", *_argv(workdir, "--quiet")[4:]])
    assert code == 0, err
    assert recorder.calls["edit"][2] == ""


def test_threshold_one_is_refused_before_loading(capsys, workdir, recorder):
    code, _, err = run(capsys, _argv(workdir, "--threshold", "1"))
    assert_one_line_error(code, err, "--threshold", "[0, 1)")
    assert "load_components" not in recorder.calls


def test_unwritable_output_folder_is_refused_before_loading(capsys, workdir, recorder):
    folder = workdir / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root ignores permissions: a folder nobody can write in
            folder = Path("/proc/self")
        code, _, err = run(capsys, _argv(workdir)[:-1] + [str(folder / "o.png")])
        assert_one_line_error(code, err, "cannot write in the folder")
        assert "load_components" not in recorder.calls
    finally:
        (workdir / "read-only").chmod(0o755)


@pytest.mark.parametrize("option", ["--out", "--mask-out"])
def test_a_format_that_cannot_hold_the_image_is_refused_before_loading(capsys, workdir, recorder, option):
    argv = _argv(workdir) if option == "--mask-out" else _argv(workdir, out="o.xbm")
    if option == "--mask-out":
        argv += ["--mask-out", str(workdir / "m.xbm")]
    code, _, err = run(capsys, argv)
    assert_one_line_error(code, err, "XBM", "cannot hold", ".png")
    assert "load_components" not in recorder.calls
    assert files(workdir) == {"in.png"}


def test_dangling_symlink_is_refused_before_loading(capsys, workdir, recorder):
    (workdir / "o.png").symlink_to(workdir / "gone.png")
    code, _, err = run(capsys, _argv(workdir))
    assert_one_line_error(code, err, "symbolic link", "--force")
    assert "load_components" not in recorder.calls
    code, _, err = run(capsys, _argv(workdir, "--force", "--quiet"))  # --force replaces the link itself
    assert code == 0, err
    assert not (workdir / "o.png").is_symlink() and not (workdir / "gone.png").exists()


@pytest.mark.parametrize("how", ["--device", "DIFFEDIT_DEVICE"])
def test_a_missing_gpu_is_one_line_before_loading(capsys, workdir, recorder, monkeypatch, how):
    import torch

    device = "cuda:99" if torch.cuda.is_available() else "cuda"  # a GPU that is not there
    if how == "DIFFEDIT_DEVICE":
        monkeypatch.setenv("DIFFEDIT_DEVICE", device)
        argv = _argv(workdir)
    else:
        argv = _argv(workdir, "--device", device)
    code, _, err = run(capsys, argv)
    assert_one_line_error(code, err, how, "CUDA")
    assert "load_components" not in recorder.calls


def test_a_too_small_image_is_refused_before_loading(capsys, workdir, recorder):
    Image.new("RGB", (3, 5), (200, 0, 0)).save(workdir / "in.png")
    code, _, err = run(capsys, _argv(workdir))
    assert_one_line_error(code, err, "3×5", "too small")
    assert "load_components" not in recorder.calls


@pytest.mark.parametrize("limit", [1000, 100])  # our check; Pillow's DecompressionBombError (> 2 × limit)
def test_an_image_above_the_pixel_limit_is_one_line(capsys, workdir, monkeypatch, limit):
    """As a 20000×20000 PNG above the default 64 million pixels: refused before decoding."""
    def not_now(*args, **kwargs):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(diffedit_lab, "load_components", not_now)
    monkeypatch.setenv("DIFFEDIT_MAX_INPUT_PIXELS", str(limit))
    code, _, err = run(capsys, _argv(workdir))
    assert_one_line_error(code, err, "in.png", "DIFFEDIT_MAX_INPUT_PIXELS")


def test_a_malicious_pickle_model_is_one_line_and_not_run(capsys, workdir, tiny_model_dir, tmp_path):
    import pickle
    import shutil

    model = tmp_path / "evil-model"
    shutil.copytree(tiny_model_dir, model)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for weights in (model / "unet").glob("*.safetensors"):
        weights.unlink()
    (model / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"weight": Payload()}))
    code, _, err = run(capsys, edit_args(workdir, model))
    assert_one_line_error(code, err, "unet", "cannot load the weights")
    assert not marker.exists()


def test_debug_keeps_the_traceback(capsys, workdir, recorder, monkeypatch):
    def bad(*args, **kwargs):
        raise ValueError("broken on purpose")

    monkeypatch.setattr(diffedit_lab, "edit", bad)
    monkeypatch.setenv("DIFFEDIT_DEBUG", "1")
    with pytest.raises(ValueError, match="broken on purpose"):
        main(_argv(workdir))


def test_an_unexpected_error_is_one_line(capsys, workdir, recorder, monkeypatch):
    def bad(*args, **kwargs):
        raise AssertionError("Torch not compiled with CUDA enabled")

    monkeypatch.setattr(diffedit_lab, "load_components", bad)
    code, _, err = run(capsys, _argv(workdir))
    assert_one_line_error(code, err, "AssertionError", "DIFFEDIT_DEBUG=1")


# ---------------------------------------------------------------- signals and the write promise
def test_sigterm_is_handled_like_ctrl_c_and_leaves_no_temporary_file(capsys, workdir, recorder, monkeypatch):
    import signal

    real_save = Image.Image.save

    def save_then_terminated(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the outputs are being written

    monkeypatch.setattr(Image.Image, "save", save_then_terminated)
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = run(capsys, _argv(workdir, "--mask-out", str(workdir / "m.png")))
    assert code == 130 and err.strip() == "diffedit-lab: interrupted"
    assert files(workdir) == {"in.png"}
    assert signal.getsignal(signal.SIGTERM) is before  # restored when main returns


def test_out_and_mask_out_are_committed_together(capsys, workdir, recorder, monkeypatch):
    """--mask-out appears while editing: the rename of the mask fails, so --out is taken back."""
    real_edit = recorder.edit

    def edit_while_someone_writes_the_mask(*args, **kwargs):
        (workdir / "m.png").write_bytes(b"theirs")
        return real_edit(*args, **kwargs)

    monkeypatch.setattr(diffedit_lab, "edit", edit_while_someone_writes_the_mask)
    code, _, err = run(capsys, _argv(workdir, "--mask-out", str(workdir / "m.png")))
    assert_one_line_error(code, err, "m.png", "--force")
    assert files(workdir) == {"in.png", "m.png"}  # no o.png, no temporary file
    assert (workdir / "m.png").read_bytes() == b"theirs"


def test_with_force_a_failed_mask_restores_the_old_output(capsys, workdir, recorder, monkeypatch):
    (workdir / "o.png").write_bytes(b"old out")
    (workdir / "m.png").write_bytes(b"old mask")
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith("m.png") and str(src).endswith(".tmp"):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    code, _, err = run(capsys, _argv(workdir, "--mask-out", str(workdir / "m.png"), "--force"))
    assert_one_line_error(code, err, "Input/output error")
    assert (workdir / "o.png").read_bytes() == b"old out" and (workdir / "m.png").read_bytes() == b"old mask"
    assert files(workdir) == {"in.png", "o.png", "m.png"}


def test_ctrl_c_while_torch_is_imported_is_one_line(tmp_path, tiny_image):
    """``import diffedit_lab.cli`` does not import torch, so a Ctrl-C during that (slow) import
    happens inside ``main`` — simulated by an import of torch that raises KeyboardInterrupt."""
    tiny_image.save(tmp_path / "in.png")
    code = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def imp(name, *a, **k):\n"
        "    if name == 'torch' or name.startswith('torch.'):\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *a, **k)\n"
        "from diffedit_lab.cli import main\n"
        "assert 'torch' not in sys.modules\n"
        "builtins.__import__ = imp\n"
        f"sys.exit(main(['edit', {str(tmp_path / 'in.png')!r}, '--source', 'a', '--target', 'b', "
        f"'--out', {str(tmp_path / 'o.png')!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "diffedit-lab: interrupted"


def test_help_does_not_import_torch():
    code = ("import sys\nfrom diffedit_lab.cli import main\n"
            "assert main(['--help']) == 0 and main(['edit', '--help']) == 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers', 'PIL')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_help_examples_are_edits_the_default_model_can_do(capsys):
    import re

    from diffedit_lab import load_components
    from diffedit_lab.cli import build_parser
    from diffedit_lab.inputs import text_problems

    parser = build_parser()
    edit_parser = next(a for a in parser._actions if a.dest == "command").choices["edit"]
    epilog = edit_parser.epilog
    source = re.search(r"diffedit-lab edit \S+ --source '([^']*)'", epilog).group(1)
    target = re.search(r"--target '([^']*)' --out", epilog).group(1)
    c = load_components(device="cpu")
    assert c.builtin
    for text in (source, target):
        assert text_problems(c, text) == ([], False), text
    assert source != target
    mask_help = next(a for a in edit_parser._actions if a.dest == "mask_out").help
    assert "black" in mask_help and "white" in mask_help
    threshold_help = next(a for a in edit_parser._actions if a.dest == "threshold").help
    assert "[0, 1)" in threshold_help


def test_drawn_seed_is_printed_and_repeats_the_edit(workdir, tiny_model_dir, capsys):
    argv = edit_args(workdir, tiny_model_dir)
    i = argv.index("--seed")
    del argv[i:i + 2]
    argv.remove("--quiet")
    code, _, err = run(capsys, argv)
    assert code == 0, err
    seed = int(re.search(r"--seed (\d+) to repeat", err).group(1))
    first = (workdir / "out.png").read_bytes()
    code, _, err = run(capsys, argv + ["--seed", str(seed), "--force"])
    assert code == 0, err
    assert (workdir / "out.png").read_bytes() == first


def test_warnings_are_one_line_each(workdir, tiny_model_dir, capsys):
    argv = edit_args(workdir, tiny_model_dir, "--seed", "0")
    argv.remove("--quiet")
    argv[argv.index("--target") + 1] = "a green hexagon"
    code, _, err = run(capsys, argv)
    assert code == 0, err
    warns = [line for line in err.splitlines() if "warning:" in line.lower()]
    assert warns and all(line.startswith("diffedit-lab: warning: ") for line in warns), err
    assert any("hexagon" in line for line in warns), err
    assert "warnings.warn" not in err and "Traceback" not in err


def test_rescale_reaches_the_settings_and_defaults_to_the_models(capsys, workdir, recorder):
    argv = ["edit", str(workdir / "in.png"), "--source", "a cat", "--target", "a dog", "--out", str(workdir / "o.png"),
            "--rescale", "range", "--threshold", "0.4", "--quiet"]
    assert run(capsys, argv)[0] == 0
    assert recorder.calls["edit"][-1]["settings"] == EditSettings(rescale="range", threshold=0.4)
    argv[argv.index("--out") + 1] = str(workdir / "o2.png")
    del argv[argv.index("--rescale"):argv.index("--rescale") + 2]
    assert run(capsys, argv)[0] == 0 and recorder.calls["edit"][-1]["settings"].rescale == "mean"
    code, out, _ = run(capsys, ["edit", "--help"])
    assert code == 0 and "{mean,range}" in out and "min" in out


def test_bad_rescale_names_both_values(capsys, workdir, tiny_model_dir):
    code, _, err = run(capsys, edit_args(workdir, tiny_model_dir, "--rescale", "max"))
    assert_one_line_error(code, err, "--rescale", "'max'", "mean", "range")
    assert files(workdir) == {"in.png"}


def test_close_reaches_the_settings_and_defaults_to_the_models(capsys, workdir, recorder):
    argv = ["edit", str(workdir / "in.png"), "--source", "a cat", "--target", "a dog", "--out", str(workdir / "o.png"),
            "--close", "2", "--fill-holes", "--quiet"]
    assert run(capsys, argv)[0] == 0
    assert recorder.calls["edit"][-1]["settings"] == EditSettings(close=2, fill_holes=True)
    argv[argv.index("--out") + 1] = str(workdir / "o2.png")
    del argv[argv.index("--close"):argv.index("--close") + 2]
    assert run(capsys, argv)[0] == 0 and recorder.calls["edit"][-1]["settings"].close == 0
