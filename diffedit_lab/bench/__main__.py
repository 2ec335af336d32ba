"""``python -m diffedit_lab.bench <command> [options]`` — runs ``main(argv)`` of the command's module."""

from __future__ import annotations

import importlib
import sys

from diffedit_lab.bench import COMMANDS


def usage() -> str:
    lines = ["usage: python -m diffedit_lab.bench <command> [options]", "", "commands:"]
    lines += [f"  {name:<9} {about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", "`python -m diffedit_lab.bench <command> --help` lists the command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown benchmark {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        print(f"error: the `{name}` benchmark is not available in this installation ({module_name} is missing).",
              file=sys.stderr)
        return 2
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
