"""Run the atheris fuzz targets for a given time each and print what they did.

    python fuzz/run.py --seconds 600                 # every target, one after the other
    python fuzz/run.py --seconds 600 --jobs 2        # two at a time
    python fuzz/run.py --seconds 60 --target jcs     # one target (repeat --target for more)

Needs atheris (``pip install -e '.[fuzz]'``). Each target gets fresh seeds (fuzz/seeds.py)
and keeps the corpus it grew in ``WORK/corpus/<target>`` across runs; a crash input is
written to ``WORK/crashes/<target>/`` and replays with ``python fuzz/fuzz_<target>.py FILE``.
libFuzzer stops a target at its first crash. Prints one line per target (execs, execs/s,
crashes, corpus size) and exits 1 when any target crashed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.seeds import TARGETS, write_seeds

FUZZ = Path(__file__).resolve().parent
CRASH_PREFIXES = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")


@dataclass(frozen=True, slots=True)
class Result:
    target: str
    seconds: float
    execs: int
    execs_per_s: float
    crashes: list[Path]
    corpus: int
    log: Path

    def line(self) -> str:
        return (
            f"{self.target:<10} execs={self.execs} execs/s={self.execs_per_s:.0f} "
            f"crashes={len(self.crashes)} corpus={self.corpus} seconds={self.seconds:.0f}"
        )


def _stat(text: str, name: str) -> float | None:
    found = re.findall(rf"^stat::{name}:\s*(\d+)", text, re.MULTILINE)
    return float(found[-1]) if found else None


def _last_status(text: str) -> tuple[int, int]:
    """(execs, corpus units) of libFuzzer's last status line ``#N ... corp: C/...``."""
    found = re.findall(r"^#(\d+)\s+\w+\s+.*?corp: (\d+)/", text, re.MULTILINE)
    return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)


def run_target(target: str, seconds: int, work: Path) -> Result:
    corpus, seeds = work / "corpus" / target, work / "seeds" / target
    crashes, log = work / "crashes" / target, work / "logs" / f"{target}.log"
    for folder in (corpus, crashes, log.parent):
        folder.mkdir(parents=True, exist_ok=True)
    before = set(crashes.iterdir())
    command = [
        sys.executable,
        str(FUZZ / f"fuzz_{target}.py"),
        f"-max_total_time={seconds}",
        "-print_final_stats=1",
        "-timeout=30",  # one input running 30 s is a crash: the node would hang on it
        "-rss_limit_mb=2048",
        f"-artifact_prefix={crashes}/",
        str(corpus),
        str(seeds),
    ]
    started = time.monotonic()
    with log.open("w") as output:
        subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - started
    text = log.read_text(errors="replace")
    last_execs, units = _last_status(text)
    execs = int(_stat(text, "number_of_executed_units") or last_execs)
    rate = _stat(text, "average_exec_per_sec")
    new = sorted(
        path for path in set(crashes.iterdir()) - before if path.name.startswith(CRASH_PREFIXES)
    )
    return Result(
        target, elapsed, execs, rate if rate is not None else execs / elapsed, new, units, log
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--target", action="append", choices=TARGETS, help="default: all")
    parser.add_argument("--jobs", type=int, default=1, help="targets run at once (default 1)")
    parser.add_argument("--work", type=Path, default=FUZZ / "work", help="corpora and crashes")
    options = parser.parse_args()
    targets = options.target or list(TARGETS)
    work = options.work.resolve()
    write_seeds(work / "seeds", targets)
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        results = list(pool.map(lambda name: run_target(name, options.seconds, work), targets))
    for result in results:
        print(result.line())
        for crash in result.crashes:
            print(f"  crash input: {crash} (log: {result.log})")
    total = sum(len(result.crashes) for result in results)
    print(f"fuzz: targets={len(results)} crashes={total}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
