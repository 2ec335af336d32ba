"""Command line: ``diffedit-lab edit IMAGE --source TEXT --target TEXT --out OUT.png``.

The same as ``python -m diffedit_lab``. Sub-commands:

* ``edit`` — one DiffEdit edit of one image (mask, DDIM encoding, masked decoding);
* ``info`` — versions, the device that would be used, and the default model.

Promises of ``edit``:

* it never overwrites an existing file without ``--force``, and never the input image, not even
  with ``--force``;
* everything that can be checked before the model loads is: the image (readable, within the
  input policy's pixel limit), the output folders (writable), the output formats (able to hold
  an RGB image, a greyscale mask), the options' ranges (as the library's), the device;
* outputs are written atomically: to a temporary file in the destination folder, then renamed;
  ``--out`` and ``--mask-out`` are committed together or neither (an output replaced with
  ``--force`` is restored if the other fails), so an interrupted (Ctrl-C or SIGTERM) or failing
  run leaves no partial file (and no temporary one);
* bad input (a missing or unreadable image, a value out of range, an empty prompt, an unknown
  model) and any other failure ends with a non-zero exit code and a one-line reason on stderr,
  without a traceback (set ``DIFFEDIT_DEBUG=1`` to see it); warnings are one line each;
* options left unset are passed as ``None``, so the library's (and the model's) defaults apply;
  without ``--seed`` a seed is drawn and printed, so the run can be repeated.

The library (and torch) is imported inside :func:`main`, after argument parsing: ``--help``
answers at once.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import signal
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable, Sequence

PROG = "diffedit-lab"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CLIError(Exception):
    """Bad arguments: reported as one line on stderr, exit code 2 (other errors: 1)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage block) and never exits by itself."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        raise CLIError(f"{message} (see `{self.prog} --help`)")


# ---------------------------------------------------------------- argument types
def _number(kind: type, low=None, high=None, *, low_open=False, high_open=False) -> Callable[[str], float]:
    """An argparse type: ``kind`` (int or float) within [low, high] (ends open if asked)."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    noun = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def _prompt(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


# ---------------------------------------------------------------- the parser
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="DiffEdit (Couairon et al., ICLR 2023): edit an image by text, changing only "
        "the region where the source and target texts disagree.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    edit = commands.add_parser(
        "edit",
        help="edit one image",
        description="Edit IMAGE from the SOURCE text to the TARGET text with DiffEdit: "
        "(1) a mask from the difference of the noise predicted with the two texts, "
        "(2) deterministic DDIM encoding of the image up to --strength, "
        "(3) DDIM decoding with the target text, keeping the encoded latents outside the mask. "
        "Options left unset take the library's (and the model's) defaults.",
        epilog="example (the built-in model knows the toy shapes world's words: a, and, small, big, red, green, "
        "blue, yellow, orange, purple, circle, square, triangle, star, cross, diamond, on, grass, sand, water, "
        "bricks, at, night): diffedit-lab edit scene.png --source 'a red circle and a blue square' "
        "--target 'a red circle and a yellow square' --out edited.png --mask-out mask.png --seed 0   "
        "(a Stable Diffusion checkpoint: --model stable-diffusion-v1-5/stable-diffusion-v1-5 "
        "--source 'a bowl of fruits' --target 'a bowl of pears')",
    )
    edit.add_argument("image", metavar="IMAGE", help="input image (any format Pillow reads)")
    edit.add_argument("--source", required=True, metavar="TEXT",
                      help="reference text R: a caption of the input image ('' for none: the mask then "
                      "compares the target with the unconditional prediction)")
    edit.add_argument("--target", required=True, type=_prompt, metavar="TEXT",
                      help="query text Q: what the edited image should show")
    edit.add_argument("--out", required=True, metavar="OUT", help="edited image to write (.png, .jpg, ...)")
    edit.add_argument("--mask-out", metavar="PATH",
                      help="also write the mask: black = kept, white = edited, at the size of the edited image")
    edit.add_argument("--model", metavar="M",
                      help="a diffusers Stable Diffusion folder or a hub id already in the local "
                      "Hugging Face cache (default: the built-in toy model)")
    edit.add_argument("--seed", type=_number(int, 0, 2**64 - 1), metavar="S",
                      help="random seed (default: one is drawn and printed)")
    edit.add_argument("--steps", type=_number(int, 1, 1000), metavar="N", help="DDIM steps over the full schedule")
    edit.add_argument("--encoding-ratio", "--strength", dest="encoding_ratio", metavar="R",
                      type=_number(float, 0, 1, low_open=True),
                      help="encoding ratio r in (0, 1]: how far the image is DDIM-encoded (--strength: old name)")
    edit.add_argument("--mask-noise", "--mask-strength", dest="mask_noise", metavar="S",
                      type=_number(float, 0, 1, low_open=True),
                      help="noise level s in (0, 1] at which the mask is computed (paper: 0.5; --mask-strength: "
                      "old name)")
    edit.add_argument("--n", type=_number(int, 1), metavar="N", help="noise draws averaged for the mask (paper: 10)")
    edit.add_argument("--threshold", type=_number(float, 0, 1, high_open=True), metavar="T",
                      help="mask binarisation threshold in [0, 1) (paper: 0.5)")
    edit.add_argument("--fill-holes", action=argparse.BooleanOptionalAction, default=None,
                      help="fill the holes of the mask (default: the model's setting; off for Stable Diffusion)")
    edit.add_argument("--close", type=_number(int, 0), metavar="K",
                      help="close the mask over gaps of up to 2K latent cells (dilate by K, fill, erode by K), so "
                      "a broken ring becomes a region (default: the model's setting; 0, off, for Stable Diffusion)")
    edit.add_argument("--clamp-ratio", type=_number(float, 0, low_open=True), metavar="C",
                      help="clamp the difference map at C × its mean before rescaling")
    edit.add_argument("--rescale", choices=("mean", "range"), default=None,
                      help="how the clamped difference map is rescaled to [0, 1] before --threshold: 'mean' "
                      "(diffusers: divide by C × its mean; good for small regions) or 'range' (the paper: "
                      "min–max; also finds a large region such as a background) (default: the model's setting)")
    edit.add_argument("--guidance", type=_number(float, 0), metavar="G", help="classifier-free guidance of the decoding")
    edit.add_argument("--inversion-prompt", metavar="TEXT",
                      help="text for the DDIM encoding (default: none, unconditional as in the paper)")
    edit.add_argument("--inversion-guidance", type=_number(float, 0), metavar="G",
                      help="guidance of the DDIM encoding")
    edit.add_argument("--device", metavar="D",
                      help="cpu, cuda, cuda:1, mps (default: DIFFEDIT_DEVICE, else the best available)")
    edit.add_argument("--force", action="store_true", help="overwrite existing output files (never the input)")
    edit.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    edit.set_defaults(run=_run_edit)

    info = commands.add_parser("info", help="versions, device and default model",
                               description="Print versions, the device that would be used and the default model.")
    info.set_defaults(run=_run_info)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diffedit-lab")
    except PackageNotFoundError:
        return "(not installed)"


# ---------------------------------------------------------------- paths
def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _image_format(path: Path, mode: str = "RGB") -> str:
    """The Pillow format that the file name asks for, able to hold a ``mode`` image, or a CLIError."""
    from PIL import Image

    Image.init()
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise CLIError(f"{path}: cannot tell an image format from the extension {path.suffix!r} (use .png or .jpg)")
    try:  # a 8×8 trial save: some formats cannot hold colour (.xbm is black and white)
        Image.new(mode, (8, 8), (255, 0, 0) if mode == "RGB" else 255).save(io.BytesIO(), format=fmt)
    except Exception as err:
        kind = "an RGB image" if mode == "RGB" else "a greyscale mask"
        raise CLIError(f"{path}: the {fmt} format cannot hold {kind} ({_one_line(err)}); use .png") from None
    return fmt


def _check_writable(folder: Path, option: str) -> None:
    """Create and remove a temporary file in ``folder``: the only sure test (permissions, read-only
    file systems, quotas) before the long work."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".diffedit-lab-check.", suffix=".tmp")
    except OSError as err:
        raise CLIError(f"{option}: cannot write in the folder {str(folder)!r} ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(tmp)


def _check_output(path: Path, image: Path, force: bool, option: str, mode: str = "RGB") -> str:
    """Refuse an output that is the input, is a folder, exists without --force, is a dangling
    link, lies in a missing or unwritable folder, or has a format unable to hold it."""
    if _same_file(path, image):
        raise CLIError(f"{option} {path} is the input image; refusing to overwrite it (even with --force)")
    if path.is_dir():
        raise CLIError(f"{option} {path} is a folder")
    if not path.parent.is_dir():
        raise CLIError(f"{option} {path}: no such folder {str(path.parent)!r}")
    if path.is_symlink() and not path.exists() and not force:
        raise CLIError(f"{option} {path} is a symbolic link to a missing file ({os.readlink(path)}); "
                       "use --force to replace the link, or another name")
    if path.exists() and not force:
        raise CLIError(f"{option} {path} exists; use --force to overwrite it")
    fmt = _image_format(path, mode)
    _check_writable(path.parent, option)
    return fmt


def _write_atomic(items: list[tuple[object, Path, str]], force: bool) -> None:
    """Save each (PIL image, path, format): all to temporary files first, then put in place —
    all of them or none.

    Without ``force`` the rename is a hard link, which fails if the file appeared meanwhile, so
    even a race cannot overwrite anything. With ``force`` an existing file is first hard-linked
    to a backup, restored if a later rename fails. Temporary files are removed on any failure,
    Ctrl-C and SIGTERM included (``main`` turns SIGTERM into ``KeyboardInterrupt``).
    """
    umask = os.umask(0)
    os.umask(umask)
    temps: list[str] = []
    done: list[tuple[Path, str | None]] = []  # committed paths and their backups
    try:
        for image, path, fmt in items:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append(tmp)
            with os.fdopen(fd, "wb") as f:
                image.save(f, format=fmt)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
        for (_, path, _), tmp in zip(items, temps):
            done.append((path, _commit(tmp, path, force, temps)))
        done.clear()  # all in place: nothing to roll back
    finally:
        for path, backup in reversed(done):  # a failure after some renames: undo them
            try:
                if backup is not None:
                    os.replace(backup, path)
                else:
                    os.unlink(path)
            except OSError:
                pass
        for tmp in temps:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def _commit(tmp: str, path: Path, force: bool, temps: list[str]) -> str | None:
    """Put ``tmp`` at ``path``; returns the backup of the file it replaced (``None``: none)."""
    if force:
        backup = None
        if path.exists() and not path.is_symlink():
            backup = tempfile.mktemp(dir=path.parent, prefix=f".{path.name}.", suffix=".bak")
            try:
                os.link(path, backup)
                temps.append(backup)
            except OSError:
                backup = None  # no hard links here: the replace cannot be undone
        os.replace(tmp, path)
        return backup
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise CLIError(f"{path} appeared while editing; use --force to overwrite it") from None
    except OSError:  # a file system without hard links
        if path.exists() or path.is_symlink():
            raise CLIError(f"{path} appeared while editing; use --force to overwrite it") from None
        os.replace(tmp, path)
    else:
        os.unlink(tmp)
    return None


# ---------------------------------------------------------------- commands
def _say(args, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _silence_libraries() -> None:
    """--quiet: no warnings or loading bars from diffusers / transformers either."""
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("diffusers", "transformers"):
        try:
            logging = __import__(f"{name}.utils.logging", fromlist=["logging"])
        except ImportError:
            continue
        logging.set_verbosity_error()
        logging.disable_progress_bar()


def _check_device(device: str | None) -> None:
    """--device, else $DIFFEDIT_DEVICE, must name a device that exists here (before loading)."""
    from diffedit_lab.models import check_device

    name, value = ("--device", device) if device is not None else ("DIFFEDIT_DEVICE", os.environ.get("DIFFEDIT_DEVICE"))
    if not value:
        return
    try:
        check_device(value, name)
    except ValueError as err:
        raise CLIError(_one_line(err)) from None


def _check_settings(args) -> None:
    """The library's own checks of the numbers, before loading (the parser's types agree)."""
    from diffedit_lab.checks import check_seed, check_threshold

    try:
        if args.threshold is not None:
            check_threshold("--threshold", args.threshold)
        check_seed("--seed", args.seed)
    except ValueError as err:
        raise CLIError(_one_line(err)) from None


def _run_edit(args) -> int:
    image_path = Path(args.image)
    if not image_path.exists():
        raise CLIError(f"{image_path}: no such file")
    if not image_path.is_file():
        raise CLIError(f"{image_path}: not a file")
    out = Path(args.out)
    outputs = [(out, _check_output(out, image_path, args.force, "--out"))]
    if args.mask_out is not None:
        mask_out = Path(args.mask_out)
        if _same_file(mask_out, out) or os.path.abspath(mask_out) == os.path.abspath(out):
            raise CLIError("--mask-out and --out are the same file")
        outputs.append((mask_out, _check_output(mask_out, image_path, args.force, "--mask-out", "L")))
    drawn = args.seed is None
    if drawn:  # drawn here, so that it can be printed and the edit repeated
        import secrets

        args.seed = secrets.randbelow(2**32)
    _check_settings(args)
    _check_device(args.device)

    from diffedit_lab import EditSettings, edit, load_components, load_image
    from diffedit_lab.inputs import MIN_SIDE
    from diffedit_lab.models import set_threads

    # a few threads, not one per core: on a CPU shared with other work, torch's default makes
    # every step wait for a thread that lost its core (150 s instead of 7 s, measured)
    set_threads()  # $DIFFEDIT_THREADS (or $OMP_NUM_THREADS) chooses

    if args.quiet:
        _silence_libraries()

    try:
        image = load_image(image_path)
    except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise CLIError(f"{image_path}: cannot read the image ({_one_line(err)})") from None
    if min(image.size) < MIN_SIDE:
        raise CLIError(f"{image_path}: {image.size[0]}×{image.size[1]} pixels is too small to edit "
                       f"(at least {MIN_SIDE} px a side)")

    components = load_components(args.model, device=args.device)
    # unset options are None: the model's recorded settings, else the paper's, apply
    settings = EditSettings.for_model(components, **{name: getattr(args, name) for name in EditSettings.names()})
    result = edit(
        components,
        image,
        args.source,
        args.target,
        settings,
        seed=args.seed,
        progress=not args.quiet,
        # edit()'s default inversion prompt is "" (unconditional encoding), not None
        **({} if args.inversion_prompt is None else {"inversion_prompt": args.inversion_prompt}),
    )
    images = [result.image]
    if args.mask_out is not None:
        images.append(result.mask.to_image())
    _write_atomic([(img, path, fmt) for img, (path, fmt) in zip(images, outputs)], args.force)
    _say(args, "wrote " + ", ".join(str(path) for path, _ in outputs)
         + (f" (seed {args.seed}: pass --seed {args.seed} to repeat this edit)" if drawn else ""))
    return EXIT_OK


def _run_info(args) -> int:
    import platform

    import torch

    import diffedit_lab

    device = diffedit_lab.default_device()
    model_dir = Path(diffedit_lab.DEFAULT_MODEL_DIR)
    rows = [
        ("diffedit-lab", _version()),
        ("python", platform.python_version()),
        ("torch", f"{torch.__version__} (CUDA {'available' if torch.cuda.is_available() else 'not available'})"),
        ("diffusers", _dist_version("diffusers")),
        ("transformers", _dist_version("transformers")),
        ("default device", str(device)),
        ("DIFFEDIT_DEVICE", os.environ.get("DIFFEDIT_DEVICE", "(unset)")),
        ("DIFFEDIT_DTYPE", os.environ.get("DIFFEDIT_DTYPE", "(unset)")),
        ("default model", f"{model_dir} ({'present' if model_dir.is_dir() else 'missing'})"),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return EXIT_OK


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "(not installed)"


# ---------------------------------------------------------------- entry point
def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _terminate(signum, frame):
    """SIGTERM as Ctrl-C: the same clean exit (no partial output, no temporary file)."""
    raise KeyboardInterrupt


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning as one line: ``diffedit-lab: warning: …`` (each message once per run)."""
    text = f"{PROG}: warning: {' '.join(str(message).split())}"
    if text not in _shown:
        _shown.add(text)
        print(text, file=sys.stderr, flush=True)


_shown: set[str] = set()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    debug = bool(os.environ.get("DIFFEDIT_DEBUG"))
    in_main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    old_show = warnings.showwarning
    if not debug:
        warnings.showwarning = _show_warning
        _shown.clear()
    try:
        return _main(argv, debug)
    finally:
        warnings.showwarning = old_show
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _main(argv: Sequence[str] | None, debug: bool) -> int:
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:  # --help and --version
            return int(done.code or 0)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return args.run(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CLIError as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError) as err:  # the library's bad-input errors (ModelNotFoundError, ...)
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as err:  # torch failures (out of memory, ...), anything unforeseen
        if debug:
            raise
        print(f"{PROG}: error: {type(err).__name__}: {_one_line(err)} (DIFFEDIT_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_FAILURE
