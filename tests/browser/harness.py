"""Real processes for the browser tests: ``exchange demo`` and ``exchange serve`` run as
children of the test process, their output collected line by line, stopped with SIGINT.

Nothing here fakes a node: the browser talks HTTP to nodes that federate over loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from exchange.demo import DEMO_NODES, TOKEN_FILE
from exchange.operator import rebase_id
from exchange.resources import data_dir
from tests.nodes import free_ports

PROJECT = Path(__file__).resolve().parents[2]

#: How long a demo may take to get its three nodes in sync (they usually need 2 to 5 s).
SYNC_TIMEOUT_S = 90.0
#: How often a node served on its own pulls its partners in the tests (default 60 s): the
#: dashboard learns that a partner is offline, or back, at its next pull.
SERVED_SYNC_INTERVAL_S = 1.0


def child_environment(**extra: str) -> dict[str, str]:
    """The environment of a child process: it imports this checkout's ``exchange``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("EXCHANGE_HOME", None)
    env.update(extra)
    return env


class Child:
    """A child process in its own session; a thread copies its output to a log file and
    keeps it for :meth:`wait_for`."""

    def __init__(self, args: list[str], log: Path, env: Mapping[str, str]) -> None:
        self.args = args
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._file: TextIO = log.open("a", encoding="utf-8")
        self._file.write(f"$ {' '.join(args)}\n")
        self._file.flush()
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(env),
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self._lines.append(line.rstrip("\n"))
            self._file.write(line)
            self._file.flush()

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    def wait_for(self, text: str, timeout_s: float) -> None:
        """Wait until the child prints a line containing ``text``; fail if it exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                if text in self.output:
                    return
                raise AssertionError(
                    f"{self.args[3:]} exited ({self.process.returncode}) before printing "
                    f"{text!r}:\n{self.output}"
                )
            time.sleep(0.1)
        raise AssertionError(f"{self.args[3:]} did not print {text!r} in {timeout_s:.0f} s")

    def interrupt(self, timeout_s: float = 30.0) -> int:
        """Stop the child with SIGINT (as Ctrl-C does); kill it if it does not stop in time.
        Returns its exit status (negative: the signal that ended it)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        self._file.close()
        return self.process.returncode


def exchange_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "exchange.cli", *args]


@dataclass
class Demo:
    """A running (or stopped) ``exchange demo``: its nodes by key (nl, be, eu)."""

    home: Path
    base_port: int
    child: Child
    urls: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    countries: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        status = self.child.interrupt()
        output = self.child.output
        assert status == 0, f"exchange demo exited with {status} on SIGINT:\n{output}"
        assert "demo stopped" in output, output


def start_demo(home: Path, log: Path) -> Demo:
    """``exchange demo --home HOME --base-port P`` on three free ports, once in sync."""
    base_port = free_ports(len(DEMO_NODES))
    child = Child(
        exchange_command("demo", "--base-port", str(base_port), "--home", str(home)),
        log,
        child_environment(),
    )
    try:
        child.wait_for("in sync after", SYNC_TIMEOUT_S)
    except BaseException:
        child.interrupt()
        raise
    demo = Demo(home, base_port, child)
    for offset, spec in enumerate(DEMO_NODES):
        url = f"http://127.0.0.1:{base_port + offset}"
        assert f"{spec.country}  {url}" in child.output, child.output
        demo.urls[spec.key] = url
        demo.tokens[spec.key] = (home / spec.key / TOKEN_FILE).read_text("utf-8").strip()
        demo.countries[spec.key] = spec.country
    return demo


class ServedNodes:
    """The nodes of a stopped demo, each served by ``exchange serve`` in its own process,
    so that one of them can go offline and come back while the others run on."""

    def __init__(self, demo: Demo, logs: Path) -> None:
        self.demo = demo
        self.logs = logs
        self.children: dict[str, Child] = {}

    def start(self, key: str) -> None:
        assert key not in self.children, f"{key} is running"
        self.children[key] = Child(
            exchange_command("serve", "--home", str(self.demo.home / key)),
            self.logs / f"serve-{key}.log",
            child_environment(
                EXCHANGE_SYNC_INTERVAL_S=str(SERVED_SYNC_INTERVAL_S), EXCHANGE_VERIFY_WORKERS="0"
            ),
        )
        self.children[key].wait_for("serving", 30)
        wait_until(lambda: answers(self.demo.urls[key]), 30, f"{key} answers")

    def stop(self, key: str) -> None:
        child = self.children.pop(key)
        status = child.interrupt()
        assert status == 0, f"exchange serve ({key}) exited with {status}:\n{child.output}"
        assert not answers(self.demo.urls[key]), f"{key} still answers after it stopped"

    def stop_all(self) -> None:
        for key in list(self.children):
            self.stop(key)


def answers(url: str) -> bool:
    """Whether a node answers ``GET url`` (its node document) with 200."""
    request = urllib.request.Request(url, headers={"Accept": "application/activity+json"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting until {what}")
        time.sleep(0.2)


@dataclass(frozen=True)
class Example:
    """One object the demo publishes: where, and its titles by language."""

    id: str
    type: str
    node: str  # the demo node's key
    country: str
    names: Mapping[str, str]


def demo_examples(demo: Demo) -> list[Example]:
    """The objects each demo node publishes, with the ids they get on that node."""
    examples = []
    for spec in DEMO_NODES:
        for name in spec.examples:
            text = data_dir("examples").joinpath(f"{name}.json").read_text("utf-8")
            document: dict[str, Any] = rebase_id(json.loads(text), demo.urls[spec.key])
            examples.append(
                Example(
                    document["id"], document["type"], spec.key, spec.country, document["nameMap"]
                )
            )
    return examples
