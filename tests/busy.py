"""Run a command with CPU-burning processes alongside, as on a shared, busy machine.

    python -m tests.busy [--burners 4] -- COMMAND...

`make test-load` runs the process-starting tests this way (load about three times the cores
on a 2-core machine). The burners are stopped however the command ends; its exit code is
returned.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys


def _burn() -> None:
    while True:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burners", type=int, default=4)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.burners)]
    for burner in burners:
        burner.start()
    try:
        return subprocess.call(command)
    finally:
        for burner in burners:
            burner.terminate()
        for burner in burners:
            burner.join()


if __name__ == "__main__":
    sys.exit(main())
