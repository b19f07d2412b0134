"""The deployment manifests (deploy/): Kubernetes schemas, the generated topics, one workload per
service, settings the code reads, secrets kept out of plain config, the compose file's structure."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from rebound.codegen import manifests as deploy_manifests
from rebound.settings import DEFAULT_DATABASE, LOCAL_DATABASE_PASSWORD
from rebound_contracts import ALL_TOPICS

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "services" / "rebound"
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
# The oldest and the newest Kubernetes versions whose schemas kubernetes-validate bundles for us.
KUBERNETES_VERSIONS = ("1.33", "1.37")
HTTP_PORT = 8080
SECRET_KEYS = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL")
URL_PASSWORD = re.compile(r"://[^:/@\s]+:([^@\s]+)@")


def url_password(url: str) -> str:
    match = URL_PASSWORD.search(url)
    assert match is not None, "the URL holds no password"
    return match.group(1)


def settings_env_names() -> set[str]:
    """The environment variables services/rebound/settings.py reads."""
    names = set(re.findall(r"""env\.get\(\s*["']([A-Z][A-Z0-9_]*)["']""", (PACKAGE / "settings.py").read_text()))
    assert {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"} <= names, "settings.py no longer reads env.get(...)?"
    return names


def rebound_services() -> set[str]:
    """The registry's producers and consumers that are Rebound services (a package of their own)."""
    named = {name for topic in ALL_TOPICS for name in (*topic.producers, *topic.consumers)}
    services = {name for name in named if (PACKAGE / name).is_dir()}
    assert services, "no Rebound service among the registry's producers and consumers"
    return services


# --- Kubernetes ---------------------------------------------------------------------------------


def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


K8S_FILES = [K8S / name for name in kustomization(K8S)["resources"]]


def k8s_objects() -> list[dict]:
    return [doc for path in K8S_FILES for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> list[dict]:
    return [obj for obj in k8s_objects() if obj["kind"] == kind]


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def deployments_by_service() -> dict[str, dict]:
    """The Deployments of `rebound run SERVICE`, by service."""
    by_service = {}
    for deployment in of_kind("Deployment"):
        (container,) = containers(deployment)
        if container["args"][:1] == ["console"]:
            continue  # the console's web app: test_the_console_web_app_is_served_behind_tls
        assert container["args"][:1] == ["run"], f"{deployment['metadata']['name']} does not `rebound run`"
        by_service[container["args"][1]] = deployment
    return by_service


def test_the_kustomization_lists_every_manifest_in_the_directory() -> None:
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization(K8S)["resources"]) == on_disk


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", K8S_FILES, ids=lambda path: path.name)
def test_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert documents, f"{path} holds no object"
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_schema_validation_rejects_a_broken_deployment() -> None:
    deployment = copy.deepcopy(of_kind("Deployment")[0])
    containers(deployment)[0]["ports"][0]["containerPort"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_every_rebound_service_has_a_deployment_and_nothing_else_does() -> None:
    assert set(deployments_by_service()) == rebound_services()


def test_every_deployed_service_is_one_rebound_run_accepts() -> None:
    from rebound.cli import Service

    assert set(deployments_by_service()) <= {service.value for service in Service}
    assert set(compose()["services"]) & rebound_services() <= {service.value for service in Service}


@pytest.mark.parametrize("service", sorted(rebound_services()))
def test_deployment_serves_probes_and_metrics_on_its_http_port(service: str) -> None:
    deployment = deployments_by_service()[service]
    template = deployment["spec"]["template"]
    (container,) = containers(deployment)
    assert deployment["spec"]["replicas"] == 2
    assert container["args"] == ["run", service]
    assert {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"} in container["ports"]
    assert {"name": "REBOUND_HTTP_PORT", "value": str(HTTP_PORT)} in container["env"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT),
        "prometheus.io/path": "/metrics",
    }
    assert container["resources"]["limits"]["memory"] == "256Mi"
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


@pytest.mark.parametrize("service", sorted(rebound_services()))
def test_each_deployment_has_a_service_exposing_its_http_port(service: str) -> None:
    pod_labels = deployments_by_service()[service]["spec"]["template"]["metadata"]["labels"]
    matching = [s for s in of_kind("Service") if s["spec"]["selector"].items() <= pod_labels.items()]
    assert len(matching) == 1, f"{service}: {len(matching)} Services select its pods"
    assert {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"} in matching[0]["spec"]["ports"]


def test_the_console_web_app_is_served_behind_tls_with_one_secret_for_every_replica() -> None:
    [deployment] = [d for d in of_kind("Deployment") if containers(d)[0]["args"][:1] == ["console"]]
    (container,) = containers(deployment)
    assert deployment["spec"]["replicas"] == 2
    assert container["args"] == ["console", "--host", "0.0.0.0", "--port", str(HTTP_PORT), "--secure-cookies"]
    assert {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"} in container["ports"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    [secret_ref] = [v["valueFrom"]["secretKeyRef"] for v in container["env"] if v["name"] == "REBOUND_CONSOLE_SECRET"]
    [secret] = [s for s in of_kind("Secret") if s["metadata"]["name"] == secret_ref["name"]]
    assert secret["stringData"] == {secret_ref["key"]: "REPLACE-ME"}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    [service] = [s for s in of_kind("Service") if s["spec"]["selector"].items() <= pod_labels.items()]
    assert {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"} in service["spec"]["ports"]


def test_jobs_migrate_the_database_and_create_the_topics() -> None:
    assert sorted(tuple(containers(job)[0]["args"]) for job in of_kind("Job")) == [("migrate",), ("topics",)]


def test_every_container_takes_its_settings_from_the_configmap_and_the_secret() -> None:
    config_maps = {obj["metadata"]["name"] for obj in of_kind("ConfigMap")}
    secrets = {obj["metadata"]["name"] for obj in of_kind("Secret")}
    for workload in of_kind("Deployment") + of_kind("Job"):
        for container in containers(workload):
            sources = container["envFrom"]
            assert {s["configMapRef"]["name"] for s in sources if "configMapRef" in s} <= config_maps
            assert {s["secretRef"]["name"] for s in sources if "secretRef" in s} <= secrets
            assert len(sources) == 2, f"{workload['metadata']['name']}: envFrom {sources}"
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert workload["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_every_env_var_the_manifests_set_is_read_by_the_settings() -> None:
    names = set()
    for config_map in of_kind("ConfigMap"):
        names |= set(config_map["data"])
    for secret in of_kind("Secret"):
        names |= set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for workload in of_kind("Deployment") + of_kind("Job"):
        for container in containers(workload):
            names |= {variable["name"] for variable in container.get("env", [])}
    assert names - settings_env_names() == set()


def test_the_database_url_is_only_in_the_secret_with_a_value_to_replace() -> None:
    [secret] = [s for s in of_kind("Secret") if "DATABASE_URL" in s["stringData"]]
    assert set(secret["stringData"]) == {"DATABASE_URL"}
    assert url_password(secret["stringData"]["DATABASE_URL"]) == "REPLACE-ME"
    for config_map in of_kind("ConfigMap"):
        for key, value in config_map["data"].items():
            assert not SECRET_KEYS.search(key) and key != "DATABASE_URL", f"ConfigMap holds {key}"
            assert not URL_PASSWORD.search(value), f"ConfigMap {key} holds a password"
    for workload in of_kind("Deployment") + of_kind("Job"):
        for container in containers(workload):
            assert "DATABASE_URL" not in {variable["name"] for variable in container.get("env", [])}


# --- Strimzi topics ------------------------------------------------------------------------------


def test_strimzi_topics_are_what_the_registry_generates() -> None:
    stale = deploy_manifests.stale()
    assert stale == [], f"deploy/k8s/topics is out of date ({', '.join(stale)}): run `make manifests`"


def test_generated_topics_cover_the_registry_for_three_brokers() -> None:
    files = deploy_manifests.render()
    topics = [yaml.safe_load(text) for name, text in files.items() if name != "kustomization.yaml"]
    assert {t["spec"]["topicName"]: t["spec"]["partitions"] for t in topics} == {
        topic.name: topic.partitions for topic in ALL_TOPICS
    }
    for topic in topics:
        assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2" and topic["kind"] == "KafkaTopic"
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == 2
        assert re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", topic["metadata"]["name"])
    generated = yaml.safe_load(files["kustomization.yaml"])
    assert generated["resources"] == sorted(set(files) - {"kustomization.yaml"})
    assert generated["labels"][0]["pairs"]["strimzi.io/cluster"]


def test_the_generator_writes_and_then_finds_nothing_stale(tmp_path: Path) -> None:
    (tmp_path / "removed.topic.v0.yaml").write_text("kind: KafkaTopic\n")
    written = deploy_manifests.write(tmp_path)
    assert "removed.topic.v0.yaml" in written and not (tmp_path / "removed.topic.v0.yaml").exists()
    assert deploy_manifests.stale(tmp_path) == []
    assert deploy_manifests.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "kustomization.yaml").write_text("edited by hand\n")
    assert deploy_manifests.main(["--check", "--out", str(tmp_path)]) == 1


# --- Docker compose ------------------------------------------------------------------------------
# `docker compose config` would also check the file, but needs the compose plugin; these structural
# checks stand on their own.


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_runs_kafka_postgres_the_one_shot_jobs_and_every_service() -> None:
    services = compose()["services"]
    assert set(services) == {"kafka", "postgres", "migrate", "topics", "console-web"} | rebound_services()
    assert services["console-web"]["command"][:1] == ["console"]
    assert services["console-web"]["ports"] == ["127.0.0.1:8700:8700"]
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"] == "postgres:17"
    for infrastructure in ("kafka", "postgres"):
        assert services[infrastructure]["healthcheck"]["test"][0] == "CMD"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["topics"]["command"] == ["topics"]
    assert services["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}


@pytest.mark.parametrize("service", sorted(rebound_services()))
def test_compose_service_has_replicas_waits_for_setup_and_checks_its_health(service: str) -> None:
    spec = compose()["services"][service]
    assert spec["command"] == ["run", service]
    assert spec["deploy"]["replicas"] == 2
    assert spec["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "topics": {"condition": "service_completed_successfully"},
    }
    port = spec["environment"]["REBOUND_HTTP_PORT"]
    assert port == str(HTTP_PORT)
    assert f"http://127.0.0.1:{port}/health" in " ".join(spec["healthcheck"]["test"])
    assert "ports" not in spec, "replicas cannot share a host port"


def test_compose_rebound_containers_share_one_image_built_from_the_dockerfile() -> None:
    services = compose()["services"]
    rebound = [services[name] for name in ("migrate", "topics", *sorted(rebound_services()))]
    assert {spec["image"] for spec in rebound} == {"rebound:local"}
    for spec in rebound:
        assert (COMPOSE.parent / spec["build"]["context"] / spec["build"]["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        )


def test_compose_env_vars_are_read_by_the_settings_and_point_at_compose_services() -> None:
    services = compose()["services"]
    for name in ("migrate", "topics", *sorted(rebound_services())):
        environment = services[name]["environment"]
        assert set(environment) - settings_env_names() == set(), name
        kafka_host = environment["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0]
        database = urlsplit(environment["DATABASE_URL"])
        assert kafka_host == "kafka" and database.hostname == "postgres", name
        assert database.password == services["postgres"]["environment"]["POSTGRES_PASSWORD"], name
        assert database.password == LOCAL_DATABASE_PASSWORD, name


def test_the_local_cluster_is_started_with_the_password_the_settings_default_to() -> None:
    script = (DEPLOY / "scripts" / "postgres.sh").read_text()
    assert re.findall(r"^DB_PASS=(\S+)$", script, re.M) == [LOCAL_DATABASE_PASSWORD]
    assert urlsplit(DEFAULT_DATABASE).password == LOCAL_DATABASE_PASSWORD


def _strings(node: object, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, str(k))
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, key)
    elif node is not None:
        yield key, str(node)


def test_the_only_password_in_compose_is_the_local_development_one() -> None:
    secrets = [value for key, value in _strings(compose()) if SECRET_KEYS.search(key)]
    secrets += [match.group(1) for _, value in _strings(compose()) for match in URL_PASSWORD.finditer(value)]
    assert secrets, "compose sets no database password at all?"
    assert set(secrets) == {LOCAL_DATABASE_PASSWORD}


# --- Image, README ---------------------------------------------------------------------------------


def test_the_image_runs_rebound_as_a_non_root_user() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    assert {line.split()[1] for line in lines if line.startswith("FROM ")} == {"python:3.11-slim"}
    user = [line.split()[1] for line in lines if line.startswith("USER ")][-1]
    assert user.split(":")[0] not in {"root", "0"}
    assert 'ENTRYPOINT ["rebound"]' in lines
    assert any("pip install ./contracts ." in line for line in lines)
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".state", ".bench", "build", "**/__pycache__"} <= ignored


def test_the_readme_documents_every_setting() -> None:
    readme = (DEPLOY / "README.md").read_text()
    missing = sorted(name for name in settings_env_names() if f"| `{name}` |" not in readme)
    assert missing == [], f"deploy/README.md's settings table lacks {missing}"
