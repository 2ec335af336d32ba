"""``python -m diffedit_lab`` — the command line, see :mod:`diffedit_lab.cli`."""

import sys

from diffedit_lab.cli import main

if __name__ == "__main__":
    sys.exit(main())
