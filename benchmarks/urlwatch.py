"""Benchmark: a warm `watcher run --once --all` against a warm `urlwatch` run, side by side.

The same --feeds feeds (default 200; 30 items each, 100 ms latency, on the 50 loopback hosts of
`benchmarks/poll.py`): watcher from its sources.yaml on a SQLite database, urlwatch from a
urls.yaml with one `url:` job per feed, its config and cache in the same temporary directory.
urlwatch is installed in a venv of its own (created on first use under --venv, default
~/.cache/watcher-bench/urlwatch-venv, with `python -m venv` and `pip install urlwatch`), so
the project's environment is left alone.

Each tool first runs once to warm up (watcher stores the items and the validators; urlwatch
keeps each page and its ETag in its cache), then the two warm runs alternate --runs times
(default 3). Both run as installed: their modules read from bytecode (see
`poll.INSTALLED`). Printed per tool: median wall time and CPU time (user+sys of the process and of
every process it waited for: watcher's parse workers included), the HTTP answers the servers
gave it in the warm runs (304 when a conditional request found the feed unchanged), then
watcher / urlwatch for wall and CPU against the targets (<= 0.30x wall, <= 0.6x CPU).

    python benchmarks/urlwatch.py [--runs 3] [--feeds 200] [--venv DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, too

from benchmarks import poll

DEFAULT_VENV = Path.home() / ".cache" / "watcher-bench" / "urlwatch-venv"


def urlwatch_venv(path: Path) -> Path:
    """The urlwatch program of the benchmark's own venv, made (and urlwatch installed) if
    missing."""
    program = path / "bin" / "urlwatch"
    if not program.exists():
        print(f"creating {path} and installing urlwatch into it", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
        subprocess.run(
            [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "urlwatch"], check=True
        )
    return program


def urlwatch_files(directory: Path, urls: list[str]) -> list[str]:
    """urls.yaml (one job per feed), urlwatch.yaml and the cache path, as urlwatch's
    arguments."""
    jobs = "---\n".join(f"name: feed-{n}\nurl: {url}\n" for n, url in enumerate(urls))
    (directory / "urls.yaml").write_text(jobs)
    (directory / "urlwatch.yaml").write_text(
        "display: {new: true, error: true, unchanged: false, empty-diff: false}\n"
        "report: {stdout: {enabled: true, color: false}}\n"
    )
    return [
        "--urls",
        str(directory / "urls.yaml"),
        "--config",
        str(directory / "urlwatch.yaml"),
        "--cache",
        str(directory / "cache.db"),
    ]


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall s, CPU s of the process tree, stderr) of one run."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=env and env["HOME"]
    )
    err = proc.stderr.read().decode() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{command[0]} failed ({status}): {err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args()
    program = urlwatch_venv(args.venv)
    poll.FEEDS = args.feeds
    _servers, urls = poll.start_servers()
    load_before = os.getloadavg()
    results: dict[str, list[tuple[float, float]]] = {"watcher": [], "urlwatch": []}
    answers: dict[str, Counter[int]] = {"watcher": Counter(), "urlwatch": Counter()}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        config = poll.write_config(directory, urls)
        db = poll.fresh_db("sqlite", directory, 0)
        home = directory / "home"  # urlwatch's own files (none expected) stay in here
        home.mkdir()
        env = {**poll.INSTALLED, "HOME": str(home)}  # both read their modules' bytecode
        urlwatch = [str(program), *urlwatch_files(directory, urls)]
        poll.run_once(config, db)  # cold: stores the items and the validators
        timed(urlwatch, env)  # first run: every job new, pages and ETags cached
        for _ in range(args.runs):
            for name in ("watcher", "urlwatch"):
                poll.Handler.statuses.clear()
                if name == "watcher":
                    wall, cpu, *_rest = poll.run_once(config, db)
                else:
                    wall, cpu, _err = timed(urlwatch, env)
                results[name].append((wall, cpu))
                answers[name].update(poll.Handler.statuses)
    print(
        f"warm cycle, whole process: {args.feeds} feeds x {poll.ITEMS} items, {poll.HOSTS} "
        f"hosts, {poll.LATENCY * 1000:.0f} ms latency, median of {args.runs}; load average "
        f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    medians = {}
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        medians[name] = (wall, cpu)
        told = ", ".join(f"{n} x {code}" for code, n in sorted(answers[name].items()))
        print(
            f"  {name:9s} wall {wall:.2f} s  cpu {cpu:.2f} s  "
            f"(wall {min(r[0] for r in runs):.2f}-{max(r[0] for r in runs):.2f}; "
            f"answers: {told})"
        )
    wall_ratio = medians["watcher"][0] / medians["urlwatch"][0]
    cpu_ratio = medians["watcher"][1] / medians["urlwatch"][1]
    print(
        f"  watcher / urlwatch: wall {wall_ratio:.2f}x (target <= 0.30x), "
        f"cpu {cpu_ratio:.2f}x (target <= 0.6x)"
    )


if __name__ == "__main__":
    main()
