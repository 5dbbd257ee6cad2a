"""The files of deploy/ say what docs/operations.md says they do: the compose file runs two
workers of one node on PostgreSQL behind nginx, the image runs `exchange serve` as a user
that is not root with a health check, the systemd unit is hardened (and systemd accepts
it), the nginx template renders completely and nginx accepts it, and the scripts parse."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.nginx import (
    TEMPLATE,
    VARIABLES,
    check_config,
    render,
    require_nginx,
    template_variables,
    write_config,
)
from tests.nodes import PROJECT

DEPLOY = PROJECT / "deploy"
IMAGE_HOME = "/var/lib/exchange"


# --- compose -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    found: dict[str, Any] = compose["services"]
    for volume in ("home", "pgdata", "nginx-cache"):
        assert volume in compose["volumes"], volume
    return found


def workers(services: dict[str, Any]) -> dict[str, Any]:
    """The services that run `exchange serve`: the image's command, not overridden."""
    return {
        name: service
        for name, service in services.items()
        if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
        and "command" not in service
    }


def test_compose_runs_two_workers_of_one_node_on_postgresql(services: dict[str, Any]) -> None:
    found = workers(services)
    assert sorted(found) == ["node-1", "node-2"]
    homes = set()
    for name, worker in found.items():
        environment = worker["environment"]
        url = urlsplit(environment["EXCHANGE_DATABASE_URL"])
        assert (url.scheme, url.hostname) == ("postgresql", "postgres"), name
        assert url.password is None, "the password stays out of the URL (and exchange.toml)"
        assert environment["PGPASSWORD"].startswith("${POSTGRES_PASSWORD")
        assert environment["EXCHANGE_HOST"] == "0.0.0.0"
        assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert worker["depends_on"]["init"]["condition"] == "service_completed_successfully"
        homes.add(tuple(worker["volumes"]))
        assert environment["EXCHANGE_HOME"].startswith(f"{IMAGE_HOME}/")
    assert homes == {(f"home:{IMAGE_HOME}",)}, "the workers share one home"
    init = services["init"]
    assert "exchange init" in " ".join(init["command"])
    assert (
        init["environment"]["EXCHANGE_DATABASE_URL"]
        == (found["node-1"]["environment"]["EXCHANGE_DATABASE_URL"])
    )


def test_compose_runs_postgresql_with_a_volume(services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    url = urlsplit(services["node-1"]["environment"]["EXCHANGE_DATABASE_URL"])
    assert postgres["environment"]["POSTGRES_USER"] == url.username
    assert postgres["environment"]["POSTGRES_DB"] == url.path.lstrip("/")


def test_compose_puts_nginx_with_the_template_in_front(services: dict[str, Any]) -> None:
    nginx = services["nginx"]
    environment = nginx["environment"]
    assert set(VARIABLES) <= set(environment)
    upstreams = re.findall(r"server ([\w.-]+):(\d+)", environment["EXCHANGE_UPSTREAMS"])
    assert sorted(upstreams) == [
        (name, worker["environment"]["EXCHANGE_PORT"])
        for name, worker in sorted(workers(services).items())
    ]
    assert "./nginx.conf:/etc/nginx/templates/default.conf.template:ro" in nginx["volumes"]
    assert f"nginx-cache:{environment['CACHE_DIR']}" in nginx["volumes"]
    assert re.fullmatch(environment["NGINX_ENVSUBST_FILTER"].replace("$$", "$"), "CACHE_DIR")
    assert not re.fullmatch(environment["NGINX_ENVSUBST_FILTER"].replace("$$", "$"), "HOSTNAME")
    assert nginx["ports"][0].endswith(f":{environment['LISTEN_PORT']}")


# --- the image -----------------------------------------------------------------------------


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_the_image_serves_as_a_user_that_is_not_root() -> None:
    steps = instructions(DEPLOY / "Dockerfile")
    final = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    assert all(rest.startswith("python:3.11-slim") for keyword, rest in steps if keyword == "FROM")
    stage = steps[final:]
    users = [rest for keyword, rest in stage if keyword == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert any(k == "RUN" and "pip install" in rest and " ." in rest for k, rest in steps)
    (command,) = [rest for keyword, rest in stage if keyword == "CMD"]
    assert command == '["exchange", "serve"]'
    (health,) = [rest for keyword, rest in stage if keyword == "HEALTHCHECK"]
    assert "/healthz" in health
    environment = " ".join(rest for keyword, rest in stage if keyword == "ENV")
    assert f"EXCHANGE_HOME={IMAGE_HOME}/node" in environment
    assert "EXCHANGE_HOST=0.0.0.0" in environment
    # What the image copies exists (the build context is the project's root).
    for keyword, rest in steps:
        if keyword == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (PROJECT / source).exists(), source


# --- the systemd unit ----------------------------------------------------------------------

HARDENING = {
    "NoNewPrivileges": "true",
    "ProtectSystem": "strict",
    "ProtectHome": "true",
    "PrivateTmp": "true",
    "PrivateDevices": "true",
    "ProtectKernelTunables": "true",
    "ProtectKernelModules": "true",
    "ProtectControlGroups": "true",
    "RestrictNamespaces": "true",
    "RestrictSUIDSGID": "true",
    "LockPersonality": "true",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
}


def unit(path: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` of a systemd unit, keys may repeat."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_is_hardened() -> None:
    directives = unit(DEPLOY / "exchange.service")
    for key, value in HARDENING.items():
        assert directives.get(key) == [value], key
    assert directives["User"][0] not in ("root", "0")
    assert directives["ExecStart"][0].endswith("/exchange serve")
    (home,) = [
        value.partition("=")[2]
        for value in directives["Environment"]
        if value.startswith("EXCHANGE_HOME=")
    ]
    writable = directives["ReadWritePaths"][0].split()
    assert any(Path(home).is_relative_to(path) for path in writable), (home, writable)
    assert Path(home).is_relative_to(f"/var/lib/{directives['StateDirectory'][0]}")
    assert home == f"{IMAGE_HOME}/node", "the same home as the image's"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # ExecStart must name an executable here: this environment's own `exchange`.
    executable = Path(sys.executable).parent / "exchange"
    text = (DEPLOY / "exchange.service").read_text()
    assert "/opt/exchange/bin/exchange" in text
    (tmp_path / "exchange.service").write_text(
        text.replace("/opt/exchange/bin/exchange", str(executable))
    )
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "exchange.service")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "exchange.service" not in done.stdout + done.stderr, done.stdout + done.stderr


# --- the nginx template and the scripts ----------------------------------------------------

VALUES = {
    "EXCHANGE_UPSTREAMS": "server 127.0.0.1:8081 max_fails=3; server 127.0.0.1:8082;",
    "LISTEN_PORT": "127.0.0.1:8080",
    "SERVER_NAME": "exchange.example.org",
    "CACHE_MAX_SIZE": "1g",
}


def test_the_template_takes_exactly_its_documented_variables() -> None:
    text = TEMPLATE.read_text()
    assert template_variables(text) == set(VARIABLES)
    header = text.split("\nupstream", 1)[0]
    for name in VARIABLES:
        assert f"#   {name}" in header, f"{name} is not documented"


@pytest.mark.parametrize("prefix", ["", "/exchange"])
def test_the_template_renders_and_nginx_accepts_it(prefix: str, tmp_path: Path) -> None:
    values = {**VALUES, "CACHE_DIR": str(tmp_path / "cache"), "EXCHANGE_PATH_PREFIX": prefix}
    rendered = render(TEMPLATE.read_text(), values)
    assert "${" not in rendered.replace("'${%s} '", "")  # the header's envsubst example
    assert "$uri" in rendered
    assert "$host" in rendered
    assert f"location = {prefix}/inbox" in rendered
    envsubst = shutil.which("envsubst")
    if envsubst is not None:  # the real envsubst renders it the same
        names = " ".join(f"${{{name}}}" for name in values)
        done = subprocess.run(
            [envsubst, names],
            input=TEMPLATE.read_text(),
            capture_output=True,
            text=True,
            env=values,
            check=True,
        )
        assert done.stdout == rendered
    nginx = require_nginx()
    done = check_config(nginx, write_config(nginx, tmp_path / "nginx", values))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("script", ["backup-node", "purge-feed-pages"])
def test_the_scripts_are_executable(script: str) -> None:
    path = DEPLOY / script
    assert path.stat().st_mode & 0o111 == 0o111
    done = subprocess.run([path, "--help"], capture_output=True, text=True)
    assert done.returncode in (0, 2)
    assert "usage: " in done.stdout + done.stderr
