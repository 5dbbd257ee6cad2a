"""Debian's nginx in tests: deploy/nginx.conf rendered as envsubst renders it, inside a main
configuration of the test's own (its prefix, pid, logs, temp and cache paths in one folder),
run as the current user.

Outside CI a machine without nginx skips these tests; in CI (``CI`` set) a missing nginx
fails them, since ``.ci/run`` installs Debian's ``nginx-light``.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.nodes import PROJECT, eventually, free_port

TEMPLATE = PROJECT / "deploy" / "nginx.conf"
#: The variables deploy/nginx.conf takes (its header documents them).
VARIABLES = (
    "EXCHANGE_UPSTREAMS",
    "LISTEN_PORT",
    "SERVER_NAME",
    "CACHE_DIR",
    "CACHE_MAX_SIZE",
    "EXCHANGE_PATH_PREFIX",
)
_REFERENCE = re.compile(r"\$(\{)?([A-Za-z_][A-Za-z0-9_]*)(?(1)\})")


def nginx_binary() -> Path | None:
    """nginx on PATH, or where Debian puts it (/usr/sbin is not on every user's PATH)."""
    found = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    return None if found is None else Path(found)


def require_nginx() -> Path:
    found = nginx_binary()
    if found is not None:
        return found
    if os.environ.get("CI"):
        pytest.fail("nginx is missing: CI needs it (.ci/run installs Debian's nginx-light)")
    pytest.skip("nginx is not installed (apt-get install nginx-light); CI runs this test")


def template_variables(text: str) -> set[str]:
    """The names written ``${NAME}`` in ``text`` (nginx's own variables are written ``$name``)."""
    return {match[1] for match in _REFERENCE.findall(text) if match[0]}


def render(text: str, values: Mapping[str, str]) -> str:
    """What ``envsubst '${A} ${B} ...'`` does for the names in ``values``: each ``$NAME`` or
    ``${NAME}`` of them is replaced, every other ``$...`` is left as it is."""

    def substitute(match: re.Match[str]) -> str:
        name = match[2]
        return values[name] if name in values else match[0]

    return _REFERENCE.sub(substitute, text)


def _temp_paths(nginx: Path, folder: Path) -> str:
    """A temp path inside ``folder`` for every module this nginx has (each would otherwise
    create its own under /var/lib/nginx, which only root may)."""
    configure = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=True).stderr
    lines = [f"client_body_temp_path {folder}/body;", f"proxy_temp_path {folder}/proxy;"]
    for module in ("fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{module}_module" not in configure:
            lines.append(f"{module}_temp_path {folder}/{module};")
    return "\n    ".join(lines)


def main_config(nginx: Path, folder: Path, included: Path) -> str:
    """nginx.conf for a test: everything under ``folder``, ``included`` in http{}."""
    user = ""
    if os.geteuid() == 0:  # else nginx runs its workers as nobody, who cannot read folder
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    return f"""{user}
daemon off;
master_process on;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {folder}/access.log;
    {_temp_paths(nginx, folder / "temp")}
    include {included};
}}
"""


def write_config(nginx: Path, folder: Path, values: Mapping[str, str]) -> Path:
    """Render the template with ``values`` into ``folder``; returns the main config."""
    (folder / "temp").mkdir(parents=True, exist_ok=True)
    included = folder / "exchange.conf"
    included.write_text(render(TEMPLATE.read_text(), values))
    main = folder / "nginx.conf"
    main.write_text(main_config(nginx, folder, included))
    return main


def check_config(nginx: Path, main: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` of ``main``: its return code and what it said."""
    return subprocess.run(
        [nginx, "-t", "-p", str(main.parent), "-c", str(main), "-e", "stderr"],
        capture_output=True,
        text=True,
        check=False,
    )


@dataclass(frozen=True, slots=True)
class Nginx:
    url: str
    cache_dir: Path
    folder: Path


@contextlib.asynccontextmanager
async def running_nginx(
    folder: Path, upstreams: list[str], *, prefix: str = ""
) -> AsyncIterator[Nginx]:
    """nginx with deploy/nginx.conf in front of ``upstreams`` (host:port each)."""
    nginx = require_nginx()
    port = free_port()
    cache_dir = folder / "cache"
    values = {
        "EXCHANGE_UPSTREAMS": " ".join(f"server {u};" for u in upstreams),
        "LISTEN_PORT": f"127.0.0.1:{port}",
        "SERVER_NAME": "_",
        "CACHE_DIR": str(cache_dir),
        "CACHE_MAX_SIZE": "64m",
        "EXCHANGE_PATH_PREFIX": prefix,
    }
    main = write_config(nginx, folder, values)
    output = (folder / "nginx.out").open("w")
    process = subprocess.Popen(
        [nginx, "-p", str(folder), "-c", str(main), "-e", "stderr"],
        stdout=output,
        stderr=subprocess.STDOUT,
    )

    async def listening() -> bool:
        if process.poll() is not None:
            pytest.fail(f"nginx stopped: {(folder / 'nginx.out').read_text()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    try:
        await eventually(listening)
        yield Nginx(f"http://127.0.0.1:{port}", cache_dir, folder)
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: workers finish what they serve
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()
