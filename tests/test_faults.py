"""exchange/faults.py: fault points do nothing unless armed; armed, they kill the process
(or run the action an in-process test gives) with their probability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from exchange import faults
from exchange.errors import UsageError
from tests.nodes import PROJECT

PASS_POINT = "from exchange.faults import fault_point; fault_point('{}'); print('passed')"


def run_point(point: str, armed: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_FAULTS")}
    if armed:
        environ["EXCHANGE_FAULTS"] = armed
    return subprocess.run(
        [sys.executable, "-c", PASS_POINT.format(point)],
        cwd=PROJECT,
        env={**environ, "PYTHONPATH": str(PROJECT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_armed_point_kills_the_process_and_names_itself() -> None:
    done = run_point("merge.in_transaction", "merge.after_commit:0.5,merge.in_transaction:1")
    assert done.returncode == -signal.SIGKILL
    assert "fault point merge.in_transaction: SIGKILL" in done.stderr
    assert "passed" not in done.stdout


@pytest.mark.parametrize(
    "armed",
    ["", "merge.in_transaction:0", "merge.after_commit:1"],
    ids=["disarmed", "probability-zero", "another-point"],
)
def test_a_point_not_armed_passes(armed: str) -> None:
    done = run_point("merge.in_transaction", armed)
    assert (done.returncode, done.stdout.strip()) == (0, "passed")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("merge.nowhere:0.1", "unknown fault point"),
        ("merge.after_commit:often", "not a probability"),
        ("merge.after_commit:1.5", r"not in \[0, 1\]"),
    ],
)
def test_a_wrong_plan_is_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        faults.parse_faults(text)


def test_armed_in_process_runs_the_action_with_seeded_draws_and_disarms_after() -> None:
    def fired_in(seed: int) -> list[int]:
        """The passes (of 40) at which the point fired."""
        fired: list[int] = []
        passes: list[str] = []
        with faults.armed({"verify.after": 0.5}, lambda name: fired.append(len(passes)), seed=seed):
            for _ in range(40):
                passes.append("verify.after")
                faults.fault_point("verify.after")
                faults.fault_point("fetch.after")  # not armed: never fires
        return fired

    first = fired_in(7)
    assert 5 < len(first) < 35
    assert fired_in(7) == first  # the same seed, the same faults
    faults.fault_point("verify.after")  # disarmed again: nothing happens
