#!/usr/bin/env python
"""Peak memory of running every notebook in ONE kernel, as a Binder user who opens them in turn
(and never restarts the kernel) would — mybinder.org gives about 2 GB, our goal is < 1.5 GB.

    python scripts/measure_binder_memory.py                 # all notebooks/*.ipynb, in order
    python scripts/measure_binder_memory.py 00 02 --json out.json
    python scripts/measure_binder_memory.py --exercises     # then the exercises' solutions too

The notebooks' code cells are concatenated into one notebook (each notebook's cells after the
previous one's) and run with nbclient in a single kernel, while a thread samples the resident
set size (RSS) of the kernel process and all its children every 0.1 s with psutil. Reported:
the peak RSS overall and the RSS reached at the end of each notebook (memory a user keeps
paying for), plus each notebook's run time in the shared kernel.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil

ROOT = Path(__file__).resolve().parents[1]
MARK = "__diffedit_notebook_done__"


def concatenate(paths: list[Path]) -> nbformat.NotebookNode:
    """One notebook with every code cell of ``paths``, and after each notebook a marker cell."""
    cells = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        cells += [nbformat.v4.new_code_cell(c.source) for c in nb.cells if c.cell_type == "code"]
        cells.append(nbformat.v4.new_code_cell(f"print({MARK!r}, {path.stem!r})"))
    return nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                          "language": "python"}})


class Sampler(threading.Thread):
    """Samples the summed RSS of a process tree every ``interval`` seconds."""

    def __init__(self, interval: float = 0.1):
        super().__init__(daemon=True)
        self.interval = interval
        self.pid: int | None = None
        self.peak = 0
        self.current = 0
        self.stop = threading.Event()

    def tree_rss(self) -> int:
        try:
            proc = psutil.Process(self.pid)
            procs = [proc] + proc.children(recursive=True)
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def run(self) -> None:
        while not self.stop.is_set():
            if self.pid is not None:
                self.current = self.tree_rss()
                self.peak = max(self.peak, self.current)
            time.sleep(self.interval)


def measure(paths: list[Path], timeout: int = 900) -> dict:
    from nbclient import NotebookClient

    nb = concatenate(paths)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}})
    sampler = Sampler()
    per_notebook = []
    start = time.perf_counter()
    last = start
    with client.setup_kernel():
        sampler.pid = client.km.provisioner.pid if hasattr(client.km.provisioner, "pid") else client.km.kernel.pid
        sampler.start()
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
            if cell.source.startswith(f"print({MARK!r}"):
                now = time.perf_counter()
                time.sleep(0.3)  # one more sample
                per_notebook.append({"notebook": cell.source.split(",")[-1].strip(" ')\""),
                                     "seconds": round(now - last, 1),
                                     "rss_after_mb": round(sampler.tree_rss() / 2**20),
                                     "peak_so_far_mb": round(sampler.peak / 2**20)})
                last = now
                print(f"{per_notebook[-1]['notebook']}: {per_notebook[-1]['seconds']} s, "
                      f"RSS after {per_notebook[-1]['rss_after_mb']} MB, peak so far "
                      f"{per_notebook[-1]['peak_so_far_mb']} MB", flush=True)
    sampler.stop.set()
    return {"peak_rss_mb": round(sampler.peak / 2**20), "total_seconds": round(time.perf_counter() - start, 1),
            "notebooks": per_notebook}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("only", nargs="*", help="notebook name prefixes (default: all)")
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument("--exercises", action="store_true",
                   help="after the notebooks, run the exercises' solutions (notebooks/exercises/solutions/)")
    p.add_argument("--limit-mb", type=float, default=1536, help="exit 1 above this peak (default 1.5 GB)")
    a = p.parse_args(argv)
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if a.only:
        paths = [x for x in paths if any(x.name.startswith(o) for o in a.only)]
    if a.exercises:
        paths += sorted((ROOT / "notebooks" / "exercises" / "solutions").glob("*.ipynb"))
    if not paths:
        print("no notebooks", file=sys.stderr)
        return 2
    result = measure(paths)
    print(f"peak RSS of one kernel running {len(paths)} notebooks: {result['peak_rss_mb']} MB "
          f"(limit {a.limit_mb:.0f} MB) in {result['total_seconds']} s")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["peak_rss_mb"] <= a.limit_mb else 1


if __name__ == "__main__":
    sys.exit(main())
