"""docker-compose.yml and Dockerfile are checked by structure (no Docker engine runs here).

Needs PyYAML in the dev requirements.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.support.services import PROJECT_DIR

SERVICES = {"postgres", "redis", "migrate", "web", "worker", "beat", "flower"}
SANDBOX = {"sandbox"}  # only with `docker compose --profile sandbox up`
MONITORING = {"prometheus", "grafana"}  # only with `docker compose --profile monitoring up`


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text()))


def _command(service: dict[str, Any]) -> str:
    cmd = service["command"]
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def test_compose_defines_exactly_the_pipeline_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES | SANDBOX | MONITORING
    assert {n for n, s in compose["services"].items() if not s.get("profiles")} == SERVICES


@pytest.mark.parametrize("name", ["postgres", "redis", "sandbox", "web", "worker", "flower"])
def test_long_running_services_have_a_healthcheck(compose: dict[str, Any], name: str) -> None:
    check = compose["services"][name]["healthcheck"]
    assert check["test"][0] in {"CMD", "CMD-SHELL"}
    assert check["retries"] >= 1


def test_every_dependency_names_a_service_and_a_valid_condition(compose: dict[str, Any]) -> None:
    conditions = {"service_healthy", "service_completed_successfully", "service_started"}
    for name, service in compose["services"].items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in SERVICES | SANDBOX | MONITORING, f"{name} depends on unknown {target}"
            assert spec["condition"] in conditions, f"{name} -> {target}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in compose["services"][target], f"{target} has no healthcheck"


def test_migrate_waits_for_a_healthy_postgres_and_runs_once(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert _command(migrate) == "flask --app webhook db upgrade"
    assert migrate["restart"] == "no"


@pytest.mark.parametrize("name", ["web", "worker", "beat"])
def test_app_processes_wait_for_migrations_and_broker(compose: dict[str, Any], name: str) -> None:
    deps = compose["services"][name]["depends_on"]
    assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert deps["redis"]["condition"] == "service_healthy"


def test_web_waits_for_the_sandbox_bank_only_when_the_sandbox_runs(compose: dict[str, Any]) -> None:
    spec = compose["services"]["web"]["depends_on"]["sandbox"]
    assert spec["condition"] == "service_healthy"
    assert spec["required"] is False  # without the sandbox profile, web starts against the real bank


def test_the_sandbox_bank_runs_only_under_its_profile(compose: dict[str, Any]) -> None:
    # Its pay and fault routes mark orders paid: it must never start by default.
    assert compose["services"]["sandbox"]["profiles"] == ["sandbox"]
    for name, service in compose["services"].items():
        assert "sandbox" not in (service.get("profiles") or []) or name == "sandbox"


@pytest.mark.parametrize(("name", "variable"), [
    ("API_TOKEN", "API_TOKEN"),
    ("FLOWER_BASIC_AUTH", "FLOWER_BASIC_AUTH"),
    ("CHECKOUT_SECRET", "CHECKOUT_SECRET"),
    ("DATABASE_URL", "POSTGRES_PASSWORD"),
])
def test_compose_refuses_to_start_without_the_secrets(compose: dict[str, Any], name: str,
                                                      variable: str) -> None:
    # `${VAR:?message}`: compose stops with the message when VAR is unset or empty; no default secret.
    required = re.compile(r"\$\{" + variable + r":\?[^}]+\}")
    for service_name in ("migrate", "web", "worker", "beat", "flower", "sandbox"):
        assert required.search(compose["services"][service_name]["environment"][name]), (service_name, name)


def test_the_database_takes_its_password_from_the_required_variable(compose: dict[str, Any]) -> None:
    password = compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", password)


def test_no_default_password_or_token_is_left_for_the_required_secrets() -> None:
    raw = (PROJECT_DIR / "docker-compose.yml").read_text()
    for name in ("API_TOKEN", "FLOWER_BASIC_AUTH", "CHECKOUT_SECRET", "POSTGRES_PASSWORD"):
        assert f"${{{name}:-" not in raw, name
    assert "admin:change-me" not in raw
    assert "qpay:qpay@" not in raw
    assert not re.search(r"POSTGRES_PASSWORD:\s*qpay\b", raw)


def test_published_ports_bind_loopback_only(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = {name: service["ports"] for name, service in services.items() if "ports" in service}
    assert set(published) == {"web", "flower", "sandbox", "prometheus", "grafana"}
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), (name, port)


@pytest.mark.parametrize(("name", "program"), [
    ("web", "gunicorn -c gunicorn.conf.py"),
    ("worker", "celery -A workers worker -Q callbacks,sweep,notifications "),
    ("beat", "celery -A workers beat"),
    ("flower", "celery -A workers flower --conf=workers/flowerconfig.py"),
    ("sandbox", "python -m sandbox"),
])
def test_services_run_the_procfile_commands(compose: dict[str, Any], name: str, program: str) -> None:
    assert _command(compose["services"][name]).startswith(program)


def test_app_services_share_the_database_and_broker_of_compose(compose: dict[str, Any]) -> None:
    for name in ("migrate", "web", "worker", "beat", "flower", "sandbox"):
        env = compose["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg2://")
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert compose["services"][name]["build"] == "."


def test_web_signs_checkout_links_with_a_secret_of_its_own(compose: dict[str, Any]) -> None:
    """No default: a known signing secret would let anyone make checkout links (`${VAR:?message}`)."""
    value = compose["services"]["web"]["environment"]["CHECKOUT_SECRET"]
    assert re.fullmatch(r"\$\{CHECKOUT_SECRET:\?[^}]+\}", value)


def test_beat_is_never_scaled(compose: dict[str, Any]) -> None:
    deploy = compose["services"]["beat"].get("deploy") or {}
    assert deploy.get("replicas", 1) == 1


def test_dockerfile_builds_on_python_311_slim_and_installs_the_requirements() -> None:
    lines = [ln.strip() for ln in (PROJECT_DIR / "Dockerfile").read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    assert "RUN pip install -r requirements.txt" in lines
    assert any(ln.startswith("USER ") and ln != "USER root" for ln in lines)


@pytest.mark.parametrize("name", sorted(MONITORING))
def test_monitoring_services_come_only_with_their_profile_and_mount_existing_files(
    compose: dict[str, Any], name: str
) -> None:
    service = compose["services"][name]
    assert service["profiles"] == ["monitoring"]
    for volume in service["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (PROJECT_DIR / source).exists(), f"{name} mounts missing {source}"
    for port in service["ports"]:
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


def test_prometheus_scrapes_the_ports_worker_and_beat_export_on(compose: dict[str, Any]) -> None:
    env = compose["services"]["worker"]["environment"]
    config = yaml.safe_load((PROJECT_DIR / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["qpay-worker"]["dns_sd_configs"][0]["port"] == int(env["WORKER_METRICS_PORT"])
    assert jobs["qpay-beat"]["static_configs"][0]["targets"] == [f"beat:{env['BEAT_METRICS_PORT']}"]
    assert jobs["qpay-web"]["dns_sd_configs"][0]["port"] == 8000
    assert env["METRICS_ADDRESS"] == "0.0.0.0"  # noqa: S104  (inside the compose network)


def test_prometheus_sends_the_webs_metrics_token(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    config = yaml.safe_load((PROJECT_DIR / "deploy" / "prometheus" / "prometheus.yml").read_text())
    web_job = next(j for j in config["scrape_configs"] if j["job_name"] == "qpay-web")
    mounted = {c["target"]: c["source"] for c in prometheus["configs"]}
    source = mounted[web_job["authorization"]["credentials_file"]]
    assert compose["configs"][source]["content"] == "${METRICS_TOKEN:-change-me}"
    assert compose["services"]["web"]["environment"]["METRICS_TOKEN"] == "${METRICS_TOKEN:-change-me}"
