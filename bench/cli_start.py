"""Start-up time of the command line: ``synthgen --help`` and ``synthgen remote jobs status``.

Times each command as a fresh process (what a shell, a script or cron pays on every call),
``--repeat`` times, for this tree and for an older commit (``--old``, default: the last commit
before ``synthgen/cli/`` became a lazy package), unpacked with ``git archive`` into a temporary
folder and put first on ``PYTHONPATH``; both run with this environment's packages. The status
command asks a real ``synthgen serve`` (embedded engine, no training process) on a free loopback
port about a queued job. Prints a table of median and worst wall times and the ratio old/new.

    python bench/cli_start.py --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from api_load import ROOT, SAMPLE, free_port, make_key, start_server

OLD = "29ed3d9"  # the commit before the package: `import synthgen.cli` loaded torch

# The entry point of `pyproject.toml` (synthgen.cli:app) as a process; the tree it imports is
# the first entry of PYTHONPATH.
ENTRY = "import sys; from synthgen.cli import app; sys.argv[0] = 'synthgen'; app()"


def unpack(ref: str, into: Path) -> Path:
    """``ref``'s synthgen/, api/ and workers/ in a folder (no checkout of the work tree)."""
    archive = subprocess.run(["git", "archive", ref, "synthgen", "api", "workers"], cwd=ROOT,
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def wall_times(tree: Path, args: list[str], env: dict[str, str], repeat: int) -> list[float]:
    env = {**env, "PYTHONPATH": str(tree)}
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", ENTRY, *args], env=env, cwd=tree,
                                capture_output=True, text=True, timeout=300)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args)} in {tree} exited {result.returncode}:\n"
                             f"{result.stderr[-2000:]}")
    return times


def queued_job(url: str, key: str) -> str:
    auth = {"Authorization": f"Bearer {key}"}
    with SAMPLE.open("rb") as f:
        dataset = httpx.post(f"{url}/v1/datasets", headers=auth, files={"file": f},
                             timeout=60).json()
    job = httpx.post(f"{url}/v1/jobs", headers=auth, timeout=60,
                     json={"dataset_id": dataset["id"], "epsilon": 1}).json()
    return str(job["id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default=OLD, help="git ref to compare against")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "old").mkdir()
        old_tree = unpack(args.old, Path(tmp) / "old")
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        port = free_port()
        server = start_server(data_dir, port)
        try:
            url = f"http://127.0.0.1:{port}"
            key = make_key(data_dir)
            job = queued_job(url, key)
            env = {**os.environ, "SYNTHGEN_URL": url, "SYNTHGEN_API_KEY": key}
            commands = [["--help"], ["remote", "jobs", "status", job]]
            print(f"| command | old ({args.old}) median (worst) | new median (worst) | "
                  "old / new |")
            print("| --- | --- | --- | --- |")
            for command in commands:
                # Alternate old and new so that a change in the machine's load hits both.
                old, new = [], []
                for _ in range(args.repeat):
                    old += wall_times(old_tree, command, env, 1)
                    new += wall_times(ROOT, command, env, 1)
                shown = " ".join(command).replace(job, "<id>")
                o, n = statistics.median(old), statistics.median(new)
                print(f"| synthgen {shown} | {o:.2f} s ({max(old):.2f}) | {n:.2f} s "
                      f"({max(new):.2f}) | {o / n:.0f}x |")
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"\n{args.repeat} runs each, python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
