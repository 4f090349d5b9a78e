"""The docker-compose deployment (docker-compose.yml, deploy/) checked against the package:
services per role, only environment variables the application reads, Prometheus scraping
and alert rules, and a Grafana dashboard that only queries metrics epochflow defines.

The YAML files need PyYAML; without it those tests are skipped (the dashboard JSON and
the source scans still run)."""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from epochflow.config import VARIABLES

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "epochflow"
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "epochflow.json"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = GRAFANA / "provisioning" / "dashboards" / "epochflow.yml"

ROLE_SERVICES = frozenset({"positions", "scheduler", "valuation", "fanout", "timeseries", "sink", "api"})
INFRASTRUCTURE_SERVICES = frozenset({"kafka", "postgres", "init", "prometheus", "grafana"})
EPOCHFLOW_SERVICES = ROLE_SERVICES | {"init"}
ROLE_WITH_HOST_PORT = "api"  # the read API and dashboard

# Metric names the dashboard may use before epochflow/metrics.py defines them, for metrics
# being added in parallel with the dashboard. Remove a name (and, once empty, this set)
# as soon as metrics.py defines it. The fan-out metrics it held have all landed; the
# open-jobs gauge is `epochflow_reprocessing_jobs_open`, since prometheus_client reserves
# `epochflow_reprocessing_jobs` for the `epochflow_reprocessing_jobs_total` counter.
METRICS_BEING_ADDED: frozenset[str] = frozenset()


# -- loading ------------------------------------------------------------------------------

def load_yaml(path: Path) -> Any:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the deployment's YAML files")
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, Any]:
    """A service's environment, whichever of the two compose forms it is written in."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {str(name): value for name, value in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # the short form means "started"
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def published_host_ports(service: dict[str, Any]) -> list[str]:
    """Fixed host ports of a service ("[ip:]host:container" or the long form); a bare
    container port gets a random host port and is not fixed."""
    published = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            if entry.get("published") not in (None, ""):
                published.append(str(entry["published"]))
        else:
            parts = str(entry).split("/")[0].split(":")
            if len(parts) >= 2:
                published.append(parts[-2])
    return published


def container_ports(service: dict[str, Any]) -> list[str]:
    ports = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.append(str(entry["target"]))
        else:
            ports.append(str(entry).split("/")[0].split(":")[-1])
    return ports


def role_services(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """service name -> role, for every service that runs `epochflow worker ROLE`."""
    return {
        name: cmd[1]
        for name, service in services.items()
        if len(cmd := command(service)) == 2 and cmd[0] == "worker"
    }


# -- what the package reads and defines -----------------------------------------------------

# _env("NAME", ...), os.environ.get("NAME"), environ.get("NAME"), os.getenv("NAME"), and
# os.environ["NAME"] when it is read rather than assigned.
_ENV_READ = re.compile(
    r"""(?:\b_env|\benviron\.get|\bgetenv)\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']"""
    r"""|\benviron\[\s*["']([A-Za-z_][A-Za-z0-9_]*)["']\s*\](?!\s*=[^=])"""
)
_METRIC_DEFINITION = re.compile(r"""\b(?:Counter|Gauge|Histogram|Summary)\(\s*["']([a-zA-Z_:][a-zA-Z0-9_:]*)["']""")
# The series prometheus_client exposes for a metric (counters: _total; histograms and
# summaries: _bucket, _sum, _count).
_EXPOSED_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count")
_EPOCHFLOW_METRIC = re.compile(r"\bepochflow_[A-Za-z0-9_:]+")


@cache
def variables_the_package_reads() -> frozenset[str]:
    """The settings' variables (`epochflow.config.VARIABLES`) and those read elsewhere."""
    names: set[str] = set(VARIABLES)
    for path in PACKAGE.rglob("*.py"):
        for match in _ENV_READ.finditer(path.read_text()):
            names.add(match.group(1) or match.group(2))
    return frozenset(names)


@cache
def metrics_the_package_defines() -> frozenset[str]:
    source = (PACKAGE / "metrics.py").read_text()
    return frozenset(
        name + suffix
        for base in _METRIC_DEFINITION.findall(source)
        for name in {base, base.removesuffix("_total")}
        for suffix in _EXPOSED_SUFFIXES
    )


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))  # collapsed rows keep theirs inside

    return [target["expr"] for panel in panels(dashboard["panels"]) for target in panel.get("targets", [])
            if target.get("expr")]


def test_the_scans_find_what_the_package_reads_and_defines():
    # Guards the regexes: an empty or tiny set would make the subset checks below vacuous.
    assert {"EPOCHFLOW_KAFKA_URL", "DATABASE_URL", "EPOCHFLOW_PARTITIONS"} <= variables_the_package_reads()
    assert {"EPOCHFLOW_PROFILE_DIR"} <= variables_the_package_reads()  # read outside config.py
    assert {"epochflow_events_total", "epochflow_batch_duration_seconds_bucket"} <= metrics_the_package_defines()


# -- docker-compose.yml: services ----------------------------------------------------------

def test_compose_has_the_infrastructure_and_one_service_per_role(services):
    assert INFRASTRUCTURE_SERVICES <= services.keys()
    roles = role_services(services)
    assert set(roles) == ROLE_SERVICES
    assert all(name == role for name, role in roles.items()), f"a role service is named after its role: {roles}"


def test_every_role_of_the_package_has_a_service(services):
    from epochflow.topology import ROLES

    assert set(ROLES) <= set(role_services(services).values()), (
        f"roles without a docker-compose service: {sorted(set(ROLES) - set(role_services(services).values()))}"
    )


def test_the_benchmark_baseline_is_not_deployed(services):
    """The naive agent of `epochflow bench ingest` is no role, and its topic no topic, of a
    deployment: `init` and `up` create only the topics of `streams.names.topic_specs`."""
    from epochflow.config import Settings
    from epochflow.streams.names import topic_specs
    from epochflow.topology import ROLES

    assert "naive" not in ROLES
    assert "naive" not in role_services(services).values()
    assert not [spec.name for spec in topic_specs(Settings()) if "naive" in spec.name]


@pytest.mark.parametrize("role", sorted(ROLE_SERVICES))
def test_each_role_service_runs_a_role_the_package_has(role):
    """`epochflow worker ROLE` must accept the role and know its modules, or the service
    exits at start."""
    from epochflow.cli.main import cli
    from epochflow.topology import ROLES

    assert role in ROLES, f"epochflow.topology.ROLES has no {role!r} role yet"
    accepted = cli.commands["worker"].params[0].type.choices
    assert role in accepted, f"`epochflow worker` accepts {list(accepted)}, not {role!r}"


def test_role_services_scale(services):
    """No container_name, no fixed host port (api excepted), no shared state volume: so
    `docker compose up --scale ROLE=N` works for every role."""
    for name in ROLE_SERVICES:
        service = services[name]
        assert "container_name" not in service, name
        if name != ROLE_WITH_HOST_PORT:
            assert published_host_ports(service) == [], f"{name} publishes a fixed host port"
        data_dir = environment(service).get("EPOCHFLOW_DATA_DIR")
        for volume in service.get("volumes") or []:
            target = volume["target"] if isinstance(volume, dict) else str(volume).split(":")[1]
            assert data_dir is None or not str(data_dir).startswith(target.rstrip("/")), (
                f"{name}: replicas would share the RocksDB directory {data_dir} through volume {volume}"
            )


def test_the_api_publishes_its_web_port_on_all_interfaces(services):
    api = services[ROLE_WITH_HOST_PORT]
    env = environment(api)
    assert env.get("EPOCHFLOW_WEB_HOST") == "0.0.0.0"
    assert container_ports(api) == [str(env["EPOCHFLOW_WEB_PORT"])]
    assert len(published_host_ports(api)) == 1


_REQUIRED_FROM_ENVIRONMENT = re.compile(r"^\$\{EPOCHFLOW_API_TOKEN:\?[^}]+\}$")


def _serves_beyond_loopback(service: dict[str, Any]) -> bool:
    host = str(environment(service).get("EPOCHFLOW_WEB_HOST", "127.0.0.1"))
    return host not in ("127.0.0.1", "localhost", "::1")


def test_every_worker_serving_beyond_loopback_requires_a_token_from_the_environment(services):
    """Every worker serves POST /ingest/; listening on all interfaces it refuses to start
    without EPOCHFLOW_API_TOKEN, and compose refuses to run without one (no default)."""
    exposed = [name for name in role_services(services) if _serves_beyond_loopback(services[name])]
    assert ROLE_WITH_HOST_PORT in exposed
    for name in exposed:
        env = environment(services[name])
        assert _REQUIRED_FROM_ENVIRONMENT.match(str(env.get("EPOCHFLOW_API_TOKEN", ""))), (
            f"{name} listens on {env.get('EPOCHFLOW_WEB_HOST')} without a required token: "
            f"set EPOCHFLOW_API_TOKEN: ${{EPOCHFLOW_API_TOKEN:?...}}"
        )
        assert "EPOCHFLOW_API_ALLOW_NO_TOKEN" not in env, f"{name} opts out of the token"


def test_role_services_start_after_init_completed(services):
    for name in ROLE_SERVICES:
        deps = depends_on(services[name])
        assert deps.get("init", {}).get("condition") == "service_completed_successfully", name


def test_init_runs_after_kafka_and_postgres_are_healthy(services):
    init = services["init"]
    assert command(init) == ["init"]
    deps = depends_on(init)
    for name in ("kafka", "postgres"):
        assert deps.get(name, {}).get("condition") == "service_healthy", name
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "pg_isready" in " ".join(map(str, services["postgres"]["healthcheck"]["test"]))


def test_kafka_runs_in_kraft_mode(services):
    env = environment(services["kafka"])
    assert "broker" in env["KAFKA_PROCESS_ROLES"] and "controller" in env["KAFKA_PROCESS_ROLES"]
    assert env.get("KAFKA_CONTROLLER_QUORUM_VOTERS")
    assert not any(name.startswith("KAFKA_ZOOKEEPER") for name in env)


# -- docker-compose.yml: environment -------------------------------------------------------

def test_epochflow_services_set_only_variables_the_application_reads(services):
    read = variables_the_package_reads()
    for name in EPOCHFLOW_SERVICES:
        env = environment(services[name])
        unknown = set(env) - read
        assert not unknown, f"{name} sets variables epochflow never reads: {sorted(unknown)}"
        assert {"EPOCHFLOW_KAFKA_URL", "DATABASE_URL"} <= set(env), name


# -- Prometheus ----------------------------------------------------------------------------

def test_prometheus_loads_the_alert_rules_compose_mounts(services):
    config = load_yaml(PROMETHEUS_CONFIG)
    rule_files = config.get("rule_files") or []
    assert any(Path(path).name == ALERTS.name for path in rule_files), rule_files
    mounts = {}
    for volume in services["prometheus"].get("volumes") or []:
        source, target = str(volume).split(":")[:2]
        mounts[target] = (COMPOSE.parent / source).resolve()
    for path in rule_files:
        assert mounts.get(path) == ALERTS.resolve(), f"{path} is not mounted from {ALERTS}"
    config_flag = next(arg for arg in command(services["prometheus"]) if arg.startswith("--config.file="))
    assert mounts.get(config_flag.split("=", 1)[1]) == PROMETHEUS_CONFIG.resolve()


def test_prometheus_discovers_every_replica_of_every_role(services):
    config = load_yaml(PROMETHEUS_CONFIG)
    web_port = int(environment(services["positions"])["EPOCHFLOW_WEB_PORT"])
    discovered: set[str] = set()
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs") or []:
            assert job.get("metrics_path") == "/metrics/", job["job_name"]
            assert sd.get("type") == "A" and sd.get("port") == web_port, sd
            discovered.update(sd["names"])
    assert ROLE_SERVICES <= discovered


def test_every_alert_rule_has_a_name_an_expression_and_a_severity():
    rules = [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]
    assert rules
    known = metrics_the_package_defines() | METRICS_BEING_ADDED
    for rule in rules:
        assert rule.get("alert") and rule.get("expr"), rule
        assert rule.get("labels", {}).get("severity"), rule["alert"]
        unknown = set(_EPOCHFLOW_METRIC.findall(rule["expr"])) - known
        assert not unknown, f"{rule['alert']} queries metrics epochflow does not define: {sorted(unknown)}"


# -- Grafana -------------------------------------------------------------------------------

def test_the_dashboard_only_queries_metrics_epochflow_defines():
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = dashboard_expressions(dashboard)
    assert dashboard.get("schemaVersion") and dashboard["panels"] and expressions
    known = metrics_the_package_defines() | METRICS_BEING_ADDED
    unknown = {name for expr in expressions for name in _EPOCHFLOW_METRIC.findall(expr)} - known
    assert not unknown, f"the dashboard queries metrics epochflow does not define: {sorted(unknown)}"


def test_metrics_being_added_are_not_defined_yet():
    """Keeps METRICS_BEING_ADDED honest: drop a name once metrics.py defines it."""
    assert not METRICS_BEING_ADDED & metrics_the_package_defines()


def test_grafana_provisions_the_datasource_and_dashboard(services):
    datasources = load_yaml(DATASOURCE)["datasources"]
    uids = {source["uid"] for source in datasources if source["type"] == "prometheus"}
    dashboard = json.loads(DASHBOARD.read_text())
    used = {
        target["datasource"]["uid"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if isinstance(target.get("datasource"), dict)
    }
    assert used and used <= uids

    grafana = services["grafana"]
    mounts = {str(v).split(":")[1]: (COMPOSE.parent / str(v).split(":")[0]).resolve()
              for v in grafana.get("volumes") or [] if str(v).startswith(".")}
    provider_paths = [p["options"]["path"] for p in load_yaml(DASHBOARD_PROVIDER)["providers"]]
    assert any(mounts.get(path) == DASHBOARD.parent.resolve() for path in provider_paths), (mounts, provider_paths)
    assert mounts.get("/etc/grafana/provisioning") == (GRAFANA / "provisioning").resolve()
    assert str(environment(grafana).get("GF_AUTH_ANONYMOUS_ENABLED")).lower() == "true"
