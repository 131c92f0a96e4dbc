"""The production-like deployment files, checked without a Docker engine: docker-compose.yml, the Dockerfile,
deploy/dagster.yaml, deploy/workspace.yaml and .env.example agree with each other and with the settings object.

Docker has no engine on the development machines, so the structure is checked here with PyYAML; the Compose file
is also handed to a real Compose parser (``docker compose config``, or Debian's ``docker-compose``) when one is
there or can be installed.
"""

import datetime as dt
import enum
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from dagster_project.settings import REPO_ROOT, Settings

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
INSTANCE_FILE = REPO_ROOT / "deploy" / "dagster.yaml"
DEPLOY_WORKSPACE = REPO_ROOT / "deploy" / "workspace.yaml"

SERVICES = {
    "postgres", "dagster-webserver", "dagster-daemon", "user-code", "mlflow", "spark-master", "spark-worker",
    "redis", "serving", "object-store",
}  # fmt: skip
DAGSTER_SERVICES = {"dagster-webserver", "dagster-daemon", "user-code"}
# `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`, `${NAME?error}`; `$${...}` is a literal `$`.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY|PRIVATE_KEY", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------------------
# Helpers: the settings' variable names and defaults, derived from the class so they cannot drift apart.


def settings_variables(model: type[BaseModel] = Settings, prefix: str = "PLATFORM_") -> dict[str, Any]:
    """``PLATFORM_<FIELD>`` (``__`` for nested groups) of every settings field, with its default."""
    variables: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            variables.update(settings_variables(annotation, f"{prefix}{name.upper()}__"))
        else:
            variables[f"{prefix}{name.upper()}"] = field.default
    return variables


def as_env_text(value: Any) -> str | None:
    """A settings default as it is written in an environment variable; None for defaults derived at run time."""
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return None  # paths derive from the repository or the data root: a container sets its own
    return str(value)


def strings(node: Any) -> Iterator[str]:
    """Every string anywhere in a parsed YAML document, keys included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the `- KEY=value` form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def flag(cmd: list[str], name: str) -> str:
    """The value of ``--name value`` or ``--name=value`` in a command."""
    for i, part in enumerate(cmd):
        if part == name:
            return cmd[i + 1]
        if part.startswith(f"{name}="):
            return part.split("=", 1)[1]
    raise AssertionError(f"{name} not in {cmd}")


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def instance_env_vars(node: Any) -> set[str]:
    """Every ``{env: NAME}`` of a Dagster config file."""
    found = set()
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        for value in node.values():
            found |= instance_env_vars(value)
    elif isinstance(node, list):
        for item in node:
            found |= instance_env_vars(item)
    return found


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


# ---------------------------------------------------------------------------------------------------------------
# The services and how they are wired.


def test_every_service_of_the_deployment_is_there(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES


def test_published_ports_bind_to_loopback_only(services: dict[str, Any]) -> None:
    published = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: write ports as 'HOST_IP:HOST:CONTAINER' strings"
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond the loopback interface"
            published[name] = port
    # The UIs people open, the prediction API, the database for an operator's psql, and the object store for the
    # UI's signed links to reports: nothing else is published.
    assert set(published) == {"postgres", "mlflow", "dagster-webserver", "spark-master", "serving", "object-store"}
    links = environment(services["user-code"])["PLATFORM_LAKE_LINK_ENDPOINT_URL"]
    assert published["object-store"] == f"{links.removeprefix('http://')}:9000"


def test_every_service_has_a_health_check_and_waits_for_healthy_dependencies(services: dict[str, Any]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), name
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: health check without {key}"
        assert service.get("restart") == "unless-stopped", name
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition == {"condition": "service_healthy"}, f"{name} starts before {dependency} is healthy"
    # The order that matters: storage before the services that write to it, the code before the UI.
    depends = {name: set(service.get("depends_on") or {}) for name, service in services.items()}
    assert {"postgres", "object-store"} <= depends["mlflow"]
    assert {"postgres", "user-code"} <= depends["dagster-webserver"]
    assert {"postgres", "user-code"} <= depends["dagster-daemon"]
    assert {"postgres", "mlflow", "spark-master"} <= depends["user-code"]
    assert {"spark-master"} <= depends["spark-worker"]
    assert {"redis", "mlflow"} <= depends["serving"]


def test_health_checks_probe_the_ports_the_services_listen_on(services: dict[str, Any]) -> None:
    def probe(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"])

    assert "pg_isready" in probe("postgres")
    assert f":{flag(command(services['mlflow']), '--port')}/health" in probe("mlflow")
    assert f":{flag(command(services['spark-master']), '--webui-port')}" in probe("spark-master")
    assert f":{flag(command(services['spark-worker']), '--webui-port')}" in probe("spark-worker")
    user_code_port = flag(command(services["user-code"]), "-p")
    assert probe("user-code").endswith(f"grpc-health-check -p {user_code_port}")
    assert f":{flag(command(services['dagster-webserver']), '-p')}/server_info" in probe("dagster-webserver")
    assert probe("dagster-daemon") == "CMD dagster-daemon liveness-check"
    assert probe("redis") == "CMD redis-cli ping"
    assert probe("object-store") == "CMD mc ready local"  # MinIO's own readiness probe of its server
    store = f"http://object-store:{flag(services['object-store']['command'], '--address').lstrip(':')}"
    for name in ("mlflow", "user-code", "serving"):  # every client of the object store, by AWS's own variables
        assert environment(services[name])["AWS_ENDPOINT_URL"] == store, name
    assert f":{environment(services['serving'])['PLATFORM_SERVING__PORT']}/healthz" in probe("serving")


def test_state_lives_in_named_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    mounts: dict[str, dict[str, str]] = {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                assert volume.endswith(":ro"), f"{name}: a bind mount of the repository must be read-only"
                assert (REPO_ROOT / source).resolve().exists(), f"{name} mounts missing {source}"
                continue
            assert source in declared, f"{name} uses undeclared volume {source}"
            mounts.setdefault(name, {})[target] = source
    used = {source for per_service in mounts.values() for source in per_service.values()}
    assert used == declared, f"declared but unused: {declared - used}"
    assert mounts["postgres"]["/var/lib/postgresql/data"] == "postgres-data"
    # MLflow's artifacts are in the object store's bucket, which the MLflow server creates before it starts.
    artifacts = flag(command(services["mlflow"]), "--artifacts-destination")
    assert artifacts.startswith("s3://") and "mlflow" not in mounts
    assert services["mlflow"]["entrypoint"] == ["python", "-m", "dagster_project.cli", "bucket", artifacts, "--"]
    assert mounts["object-store"]["/data"] == "object-store-data"
    assert flag(services["object-store"]["command"], "server") == "/data"
    # The lake is in the object store's bucket, which user-code (the runs) and serving (the prediction log) create
    # before they start, under tini: the Spark executors need no volume to reach what the driver writes.
    lake_root = environment(services["user-code"])["PLATFORM_LAKE_ROOT"]
    bucket = "/".join(lake_root.split("/")[:3])
    assert lake_root.startswith("s3://") and "spark-worker" not in mounts
    for name in ("user-code", "serving"):
        assert environment(services[name])["PLATFORM_LAKE_ROOT"] == lake_root, name
        assert services[name]["entrypoint"] == ["/usr/bin/tini", "--", *services["mlflow"]["entrypoint"][:4],
                                                bucket, "--"], name  # fmt: skip
    # The warehouse and the landing folder stay on the data volume, where the runs keep them.
    data_root = environment(services["user-code"])["PLATFORM_DATA_ROOT"]
    assert mounts["user-code"][data_root] == "platform-data"
    # Step logs written by runs in user-code are read by the webserver.
    storage = environment(services["user-code"])["DAGSTER_HOME"] + "/storage"
    for name in DAGSTER_SERVICES:
        assert mounts[name][storage] == "dagster-storage", name


def test_spark_and_mlflow_are_reached_by_the_urls_the_settings_point_at(services: dict[str, Any]) -> None:
    env = environment(services["user-code"])
    master = command(services["spark-master"])
    assert env["PLATFORM_SPARK_MASTER"] == f"spark://{flag(master, '--host')}:{flag(master, '--port')}"
    assert f"spark://{flag(master, '--host')}:{flag(master, '--port')}" in command(services["spark-worker"])
    assert services["spark-master"]["hostname"] == flag(master, "--host")
    # Executors connect back to the driver, which runs in user-code: it must advertise a name they resolve.
    assert env["SPARK_LOCAL_HOSTNAME"] == services["user-code"]["hostname"] == "user-code"
    mlflow = command(services["mlflow"])
    assert env["PLATFORM_MLFLOW_TRACKING_URI"] == f"http://mlflow:{flag(mlflow, '--port')}"
    allowed = flag(mlflow, "--allowed-hosts").split(",")
    assert "mlflow" in allowed and f"mlflow:{flag(mlflow, '--port')}" in allowed  # else MLflow refuses the client
    assert "--serve-artifacts" in mlflow
    backend = flag(mlflow, "--backend-store-uri")
    assert backend.startswith("postgresql+psycopg2://") and "@postgres:5432/${MLFLOW_POSTGRES_DB:-mlflow}" in backend


def test_the_prediction_service_and_the_runs_share_the_redis_online_store(services: dict[str, Any]) -> None:
    serving, user_code = environment(services["serving"]), environment(services["user-code"])
    for env in (serving, user_code):  # the runs publish where the service reads
        assert env["PLATFORM_SERVING__ONLINE_BACKEND"] == "redis"
        assert env["PLATFORM_SERVING__REDIS_URL"] == "redis://redis:6379/0"
    assert "6379" in [str(port) for port in services["redis"]["expose"]]
    assert serving["PLATFORM_SERVING__HOST"] == "0.0.0.0"  # inside its container; published on the loopback only
    assert services["serving"]["ports"] == [f"127.0.0.1:${{SERVING_PORT:-8000}}:{serving['PLATFORM_SERVING__PORT']}"]
    assert command(services["serving"]) == ["python", "-m", "dagster_project.service"]


def test_the_settings_in_the_containers_are_valid_and_put_the_data_on_the_volume(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("PLATFORM_"):
            monkeypatch.delenv(key)
    for key, value in environment(services["user-code"]).items():
        if key.startswith("PLATFORM_"):
            # Interpolate with the defaults written in the file: what a .env without overrides gives.
            monkeypatch.setenv(key, INTERPOLATION.sub(lambda m: m["arg"] or "", value))
    settings = Settings()
    assert settings.data_root == Path("/data")
    for path in (settings.warehouse_path, settings.landing_root):
        assert Path(path).is_relative_to("/data"), path
    assert settings.lake_root == "s3://lake/lake"  # kept as the URI it is
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert settings.spark_master == "spark://spark-master:7077"
    assert settings.jars_cache == Path("/cache/jars")


# ---------------------------------------------------------------------------------------------------------------
# Variables: the settings' names and defaults, secrets only from the environment.


def test_platform_variables_are_settings_fields_with_the_same_defaults(services: dict[str, Any]) -> None:
    known = settings_variables()
    seen = set()
    for name, service in services.items():
        for key, value in environment(service).items():
            if not key.startswith("PLATFORM_"):
                continue
            assert key in known, f"{name}: {key} is not a field of dagster_project.settings.Settings"
            seen.add(key)
            for match in INTERPOLATION.finditer(value):
                assert match["name"] == key, f"{name}: {key} reads ${{{match['name']}}}"
                expected = as_env_text(known[key])
                assert match["op"] == ":-" and match["arg"] == expected, (
                    f"{name}: default of {key} is {match['arg']!r}, the settings say {expected!r}"
                )
    # A knob of the settings that compose does not pass through would be silently ignored in the containers.
    passable = {key for key, default in known.items() if as_env_text(default) is not None}
    assert passable - seen == {"PLATFORM_MLFLOW_UI_PORT"}, "settings fields missing from docker-compose.yml"


def test_env_example_has_no_secret_and_only_known_names_with_the_settings_defaults(
    compose: dict[str, Any],
) -> None:
    example = env_file(ENV_EXAMPLE)
    known = settings_variables()
    for key, value in example.items():
        if SECRET_NAME.search(key):
            assert value == "", f".env.example must leave {key} empty"
        if key.startswith("PLATFORM_"):
            assert key in known, f".env.example: {key} is not a settings field"
            assert value == as_env_text(known[key]), f".env.example: {key}={value}, the settings say {known[key]}"
    # Every variable compose reads is documented in .env.example (or is a setting with its default in place).
    referenced = {m["name"] for text in strings(compose) for m in INTERPOLATION.finditer(text)}
    undocumented = referenced - set(example)
    assert not undocumented, f"variables docker-compose.yml reads but .env.example does not show: {undocumented}"
    # Defaults written in compose match .env.example, so copying it changes nothing but the secrets.
    for text in strings(compose):
        for m in INTERPOLATION.finditer(text):
            if m["op"] == ":-" and m["name"] in example:
                assert example[m["name"]] == m["arg"], f"{m['name']}: compose says {m['arg']}, .env.example says"


def test_no_secret_is_written_into_the_compose_file(compose: dict[str, Any], services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                match = INTERPOLATION.fullmatch(value)
                assert match and match["op"] in {":?", "?"}, f"{name}: {key} must be a required ${{...}} reference"
    for text in strings(compose):
        # Credentials inside URLs (user:password@host) only as references to the environment.
        for url in re.findall(r"[a-z+]+://[^\s]+@", text):
            password = url.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
            assert INTERPOLATION.fullmatch(password), f"a literal password in {url}"
    ignored = {line.strip() for line in (REPO_ROOT / ".gitignore").read_text().splitlines()}
    assert ".env" in ignored
    assert ".env" in DOCKERIGNORE.read_text().split()


# ---------------------------------------------------------------------------------------------------------------
# The Dagster instance and workspace of the deployment.


def test_dagster_instance_reads_every_connection_value_from_the_environment(services: dict[str, Any]) -> None:
    instance = yaml.safe_load(INSTANCE_FILE.read_text())
    storage = instance["storage"]["custom"]
    assert (storage["module"], storage["class"]) == ("dagster_project.pool_claims", "DagsterPostgresStorage")
    db = storage["config"]["postgres_db"]
    for key in ("hostname", "port", "username", "password", "db_name"):
        assert set(db[key]) == {"env"}, f"deploy/dagster.yaml writes {key} in clear"
    needed = instance_env_vars(instance)
    assert needed == {f"DAGSTER_POSTGRES_{k}" for k in ("HOST", "PORT", "USER", "PASSWORD", "DB")}
    for name in DAGSTER_SERVICES:
        env = environment(services[name])
        assert needed <= set(env), f"{name} lacks {needed - set(env)}"
        assert env["DAGSTER_POSTGRES_HOST"] == "postgres"
        assert env["DAGSTER_POSTGRES_DB"] == services["postgres"]["environment"]["POSTGRES_DB"]
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"  # the daemon drains the queue
    assert instance["telemetry"] == {"enabled": False}
    # The same step pools as the embedded default's instance: one DuckDB writer, one registry alias move.
    from dagster_project.instance import INSTANCE_CONFIG

    assert instance["concurrency"]["pools"] == yaml.safe_load(INSTANCE_CONFIG)["concurrency"]["pools"]


def test_dagster_instance_file_is_valid_dagster_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._core.instance.config import dagster_instance_config

    shutil.copy(INSTANCE_FILE, tmp_path / "dagster.yaml")
    for key, value in {"HOST": "db", "PORT": "5432", "USER": "u", "PASSWORD": "p", "DB": "d"}.items():
        monkeypatch.setenv(f"DAGSTER_POSTGRES_{key}", value)
    config, _ = dagster_instance_config(str(tmp_path))  # raises on any key or type Dagster does not accept
    assert config["storage"]["custom"]["config"]["postgres_db"]["port"] == {"env": "DAGSTER_POSTGRES_PORT"}


def test_one_code_location_served_by_user_code_and_loaded_by_webserver_and_daemon(services: dict[str, Any]) -> None:
    local = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())["load_from"]
    deployed = yaml.safe_load(DEPLOY_WORKSPACE.read_text())["load_from"]
    assert len(local) == len(deployed) == 1
    module = local[0]["python_module"]
    server = deployed[0]["grpc_server"]
    user_code = command(services["user-code"])
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    # The same code and the same location name as `dagster dev`: run history and links carry over.
    assert flag(user_code, "-m") == module["module_name"] == pyproject["module_name"]
    assert flag(user_code, "--location-name") == module["location_name"] == server["location_name"]
    assert server["location_name"] == pyproject["code_location_name"]
    assert server["host"] == "user-code" and str(server["port"]) == flag(user_code, "-p")
    assert flag(user_code, "-h") == "0.0.0.0"  # reachable from the other containers
    for name in ("dagster-webserver", "dagster-daemon"):
        assert flag(command(services[name]), "-w") == "deploy/workspace.yaml", name
    # Both files are workspaces Dagster accepts (the schema `dagster-webserver -w` validates against).
    from dagster._core.workspace.config_schema import ensure_workspace_config

    for path in (REPO_ROOT / "workspace.yaml", DEPLOY_WORKSPACE):
        ensure_workspace_config(yaml.safe_load(path.read_text()), str(path))


# ---------------------------------------------------------------------------------------------------------------
# The image.


def test_image_runs_every_service_of_ours_and_matches_the_compose_paths(services: dict[str, Any]) -> None:
    dockerfile = DOCKERFILE.read_text()
    python = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert re.search(r"^FROM python:3\.11[-.\w]*", dockerfile, re.MULTILINE) and "3.11" in python
    assert "openjdk-17-jre-headless" in dockerfile  # Spark's driver and executors
    assert "pip install -e ." in dockerfile  # settings.REPO_ROOT must stay beside dbt_project/
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE), "the image must not run as root"
    home = environment(services["user-code"])["DAGSTER_HOME"]
    assert f"COPY deploy/dagster.yaml {home}/dagster.yaml" in dockerfile
    for name in ("PLATFORM_DATA_ROOT", "PLATFORM_JARS_CACHE"):
        value = environment(services["user-code"])[name]
        assert f"{name}={value}" in dockerfile, name
        created = " ".join(re.findall(r"mkdir -p ([^\n&\\]*)", dockerfile)).split()
        assert value in created, f"the image must create {value} (owned by its user, for the volume)"
    # Nothing is fetched or parsed when a container starts: the Delta jars and the dbt manifest are in the image.
    assert "python -m dagster_project.cli jars" in dockerfile
    assert "python -m dagster_project.cli manifest" in dockerfile, "the image prepares the problem's dbt manifest"
    built = {name for name, service in services.items() if "build" in service}
    assert built == SERVICES - {"postgres", "redis", "object-store"}
    assert len({services[name]["image"] for name in built}) == 1
    # What the image needs at run time is a declared dependency, not something installed by hand.
    dependencies = " ".join(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    for package in ("dagster-postgres", "psycopg2-binary", "dagster-webserver", "mlflow", "pyspark"):
        assert package in dependencies, package


def test_build_context_leaves_out_data_environments_and_secrets() -> None:
    ignored = set(DOCKERIGNORE.read_text().split())
    assert {"data", ".venv", ".env", ".git", "artifacts", ".cache"} <= ignored
    assert "!.env.example" in ignored


# ---------------------------------------------------------------------------------------------------------------
# A real Compose parser, where one is available.


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    if shutil.which("docker-compose") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        # Debian's Compose (v1, Python): no engine needed to parse and validate a file.
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker-compose"]
        if subprocess.run(install, capture_output=True, env=env, timeout=600).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=600)
            subprocess.run(install, capture_output=True, env=env, timeout=600)
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_file_validates_with_a_real_compose_parser(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Compose client: neither `docker compose` nor `docker-compose` is installed or installable")
    compose_file = COMPOSE_FILE
    if cli[0].endswith("docker-compose"):
        # Compose v1 predates the top-level `name` of the Compose Specification; the rest is validated as written.
        compose_file = tmp_path / "docker-compose.yml"
        text = COMPOSE_FILE.read_text()
        assert re.search(r"^name: churn-platform$", text, re.MULTILINE)
        compose_file.write_text(re.sub(r"^name: .*$", "", text, flags=re.MULTILINE))
    base = [*cli, "--project-directory", str(REPO_ROOT), "-f", str(compose_file)]
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "PLATFORM_", "OBJECT_STORE_"))}

    env_file_path = tmp_path / ".env"
    required = {"POSTGRES_PASSWORD": "example", "OBJECT_STORE_ACCESS_KEY_ID": "platform",
                "OBJECT_STORE_SECRET_ACCESS_KEY": "example-secret"}  # fmt: skip
    text = ENV_EXAMPLE.read_text()
    for name, value in required.items():
        text = text.replace(f"{name}=\n", f"{name}={value}\n")
    env_file_path.write_text(text)
    done = subprocess.run(
        [*base, "--env-file", str(env_file_path), "config"], capture_output=True, text=True, env=clean_env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) == SERVICES
    env = resolved["services"]["user-code"]["environment"]
    assert env["DAGSTER_POSTGRES_PASSWORD"] == "example"
    assert env["PLATFORM_SIMULATOR__CUSTOMERS"] == "3000"

    # The copy of .env.example as it is (empty password) must not start: the `:?` guard stops it.
    refused = subprocess.run(
        [*base, "--env-file", str(ENV_EXAMPLE), "config"], capture_output=True, text=True, env=clean_env, timeout=60
    )
    assert refused.returncode != 0
    assert any(name in refused.stderr + refused.stdout for name in required)
