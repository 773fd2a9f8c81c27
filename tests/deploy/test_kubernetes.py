"""deploy/kubernetes: every overlay renders with ``kubectl kustomize``, every built-in object
validates against the Kubernetes schemas (strict: no unknown fields), and what the manifests
claim about the service holds: the probes hit paths the API serves on the port it listens on,
the worker's grace period covers its SIGTERM path, the commands exist, the Secrets referenced
are the Secrets rendered, and the KEDA ScaledObject scales the worker Deployment on the
gauges /metrics serves.
"""

from __future__ import annotations

import base64
import inspect
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from fastapi.testclient import TestClient

from service.settings import ServerSettings
from workers import context as worker_context
from workers import slot as worker_slot
from workers.client import HPOClient
from workers.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
OVERLAYS = ("external-postgres", "in-cluster-postgres")
# The oldest Kubernetes the manifests are checked against, and the newest the package knows.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
NAMESPACE = "hpo"
CRDS = {("keda.sh/v1alpha1", "ScaledObject")}  # not in the schemas: asserted field by field
EPOCH_ANNOTATION = "hpo-service.io/max-epoch-seconds"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

Obj = dict[str, Any]


def _kustomize_major() -> int | None:
    """The major version of kubectl's built-in kustomize, or None without a kubectl."""
    if not Path(KUBECTL).exists():
        return None
    out = subprocess.run([KUBECTL, "version", "--client"], capture_output=True, text=True)
    found = re.search(r"Kustomize Version: v(\d+)", out.stdout)
    return int(found.group(1)) if found else 0  # kubectl < 1.21 prints none: kustomize v2


_KUSTOMIZE = _kustomize_major()
pytestmark = pytest.mark.skipif(
    _KUSTOMIZE is None or _KUSTOMIZE < 5,
    reason="needs kubectl with kustomize v5 (kubectl >= 1.27); "
    + ("kubectl is not installed" if _KUSTOMIZE is None else "this kubectl's is older")
    + " (Debian 12's kubernetes-client, kubectl 1.20, is too old)",
)


def kustomize(directory: Path) -> list[Obj]:
    rendered = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    return [o for o in yaml.safe_load_all(rendered.stdout) if o]


def with_keda(overlay: str, tmp: Path) -> list[Obj]:
    """The overlay with the KEDA component added, as the docs tell users to add it (kustomize
    takes relative paths only)."""
    (tmp / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(ROOT / "overlays" / overlay, tmp)],
                "components": [os.path.relpath(ROOT / "keda", tmp)],
            }
        )
    )
    return kustomize(tmp)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    """Every overlay, and every overlay with KEDA, rendered once for the module."""
    out = {name: kustomize(ROOT / "overlays" / name) for name in OVERLAYS}
    for name in OVERLAYS:
        out[f"{name}+keda"] = with_keda(name, tmp_path_factory.mktemp(name))
    return out


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def container(objects: list[Obj], kind: str, name: str) -> Obj:
    containers = one(objects, kind, name)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def pod_specs(objects: list[Obj]) -> Iterator[tuple[str, Obj]]:
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]


def use_env(monkeypatch: pytest.MonkeyPatch, c: Obj) -> None:
    """This process's ``HPO_*`` environment becomes the container's literal values (those from
    Secrets are left out), so a settings class reads what the pod would."""
    for key in list(os.environ):
        if key.startswith("HPO_"):
            monkeypatch.delenv(key)
    for e in c.get("env", []):
        if "value" in e:
            monkeypatch.setenv(e["name"], e["value"])


def test_every_overlay_renders_and_validates_strictly(rendered: dict[str, list[Obj]]) -> None:
    expected = {
        "Namespace",
        "Secret",
        "Service",
        "Deployment",
        "Job",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }
    for name, objects in rendered.items():
        kinds = {o["kind"] for o in objects}
        assert expected <= kinds, name
        assert ("StatefulSet" in kinds) == name.startswith("in-cluster-postgres"), name
        assert ("ScaledObject" in kinds) == name.endswith("+keda"), name
        for o in objects:
            if (o["apiVersion"], o["kind"]) in CRDS:
                continue
            for version in K8S_VERSIONS:
                # Raises ValidationError on a wrong or unknown field, SchemaNotFoundError
                # on a kind or apiVersion that Kubernetes does not have.
                kubernetes_validate.validate(o, version, strict=True)


def test_strict_validation_refuses_an_unknown_field(rendered: dict[str, list[Obj]]) -> None:
    """The check above would catch a misspelt field (it is not vacuous)."""
    api = dict(one(rendered["external-postgres"], "Deployment", "hpo-api"))
    api["spec"] = {**api["spec"], "replica": 2}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, K8S_VERSIONS[0], strict=True)


def test_everything_lives_in_one_namespace(rendered: dict[str, list[Obj]]) -> None:
    for name, objects in rendered.items():
        assert one(objects, "Namespace", NAMESPACE)
        for o in objects:
            if o["kind"] != "Namespace":
                assert o["metadata"].get("namespace") == NAMESPACE, (name, o["kind"])


def test_every_secret_referenced_is_rendered_with_its_key(rendered: dict[str, list[Obj]]) -> None:
    """The generated Secrets carry a content hash in their names; every reference follows."""
    for name, objects in rendered.items():
        secrets = {
            o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "Secret"
        }
        refs = 0
        for where, spec in pod_specs(objects):
            for c in spec.get("initContainers", []) + spec["containers"]:
                for source in c.get("envFrom", []):
                    assert source["secretRef"]["name"] in secrets, (name, where)
                    refs += 1
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref is not None:
                        assert ref["key"] in secrets.get(ref["name"], {}), (name, where, ref)
                        refs += 1
        assert refs >= 5, name


def test_images_come_from_the_kustomization_images(rendered: dict[str, list[Obj]]) -> None:
    base = yaml.safe_load((ROOT / "base" / "kustomization.yaml").read_text())
    images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in base["images"]}
    assert images == {
        "hpo-api": "ghcr.io/hpo-service/api:0.1.0",
        "hpo-worker": "ghcr.io/hpo-service/worker:0.1.0",
    }
    for objects in rendered.values():
        api_pods = [
            one(objects, "Deployment", "hpo-api")["spec"]["template"]["spec"],
            one(objects, "Job", "hpo-migrate")["spec"]["template"]["spec"],
        ]
        for spec in api_pods:
            for c in spec.get("initContainers", []) + spec["containers"]:
                assert c["image"] == images["hpo-api"]
        assert container(objects, "Deployment", "hpo-worker")["image"] == images["hpo-worker"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_commands_are_real_hpo_commands(rendered: dict[str, list[Obj]], overlay: str) -> None:
    hpo = Path(sys.executable).parent / "hpo"
    commands = {
        tuple(container(rendered[overlay], "Job", "hpo-migrate")["command"]),
        tuple(container(rendered[overlay], "Deployment", "hpo-api")["command"]),
        tuple(container(rendered[overlay], "Deployment", "hpo-worker")["command"]),
    }
    assert commands == {("hpo", "db", "upgrade"), ("hpo", "serve"), ("hpo", "worker")}
    init = one(rendered[overlay], "Deployment", "hpo-api")["spec"]["template"]["spec"]
    assert "hpo db status" in init["initContainers"][0]["command"][-1]
    for command in [*commands, ("hpo", "db", "status")]:
        helped = subprocess.run(
            [str(hpo), *command[1:], "--help"], capture_output=True, text=True, timeout=60
        )
        assert helped.returncode == 0, (command, helped.stderr)


def test_api_probes_hit_what_the_api_serves(
    rendered: dict[str, list[Obj]], client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Liveness (and start-up) on /healthz, readiness on /readyz, on the port the server binds
    with the Deployment's own environment; the Service sends its traffic there. A real app on
    the test database answers 200 on each probe path."""
    for overlay in OVERLAYS:
        api = container(rendered[overlay], "Deployment", "hpo-api")
        ports = {p["name"]: p["containerPort"] for p in api["ports"]}
        probes = {k: api[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert {k: p["path"] for k, p in probes.items()} == {
            "startupProbe": "/healthz",
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
        }
        use_env(monkeypatch, api)
        settings = ServerSettings()
        assert settings.host == "0.0.0.0"
        for probe in probes.values():
            assert ports[probe["port"]] == settings.port
        service = one(rendered[overlay], "Service", "hpo-api")["spec"]["ports"]
        assert [ports[p["targetPort"]] for p in service] == [settings.port]
    for path in ("/healthz", "/readyz"):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text)


def sigterm_path_s(settings: WorkerSettings, epoch_s: float) -> float:
    """The longest a slot may take from SIGTERM to exit, by the worker's code (workers/slot.py,
    workers/context.py, workers/client.py): idle, its claim's long poll returns (each call may
    run its client timeout); in a trial, the epoch ends, then the checkpoint upload, the
    unsent report, the attributes and the release, each within its retry budget plus one
    timeout."""
    timeout = inspect.signature(HPOClient.__init__).parameters["timeout_s"].default
    claim = settings.poll_wait_s + 30.0  # HPOClient.claim: timeout_s = wait_seconds + 30
    checkpoint = worker_context._REPORT_RETRY_S + timeout
    reports = worker_slot._LEASE_MARGIN_S * 5 + timeout  # Slot._flush_reports
    attrs = settings.api_retry_s + timeout  # set_attrs: the client's default budget
    release = settings.api_retry_s + timeout
    return float(max(claim, epoch_s + checkpoint + reports + attrs + release))


def test_worker_grace_period_covers_its_sigterm_path(
    rendered: dict[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for overlay in rendered:
        worker = one(rendered[overlay], "Deployment", "hpo-worker")
        c = container(rendered[overlay], "Deployment", "hpo-worker")
        use_env(monkeypatch, c)
        settings = WorkerSettings()
        epoch_s = float(worker["metadata"]["annotations"][EPOCH_ANNOTATION])
        assert epoch_s >= 60
        grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        needed = sigterm_path_s(settings, epoch_s)
        assert grace > needed, (overlay, grace, needed)
        # One GPU per pod, one slot per GPU (HPO_SLOTS unset), on the GPU only.
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert settings.slots is None and settings.device == "cuda"
        # Undelivered results survive a container restart on the spool volume.
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert str(settings.spool_dir) in mounts
        assert settings.api_url == "http://hpo-api:8000"


def test_sigterm_path_follows_the_settings() -> None:
    """The bound moves with what it is derived from (a longer retry budget needs more grace)."""
    base = WorkerSettings(api_retry_s=30, poll_wait_s=10)
    longer = WorkerSettings(api_retry_s=90, poll_wait_s=10)
    assert sigterm_path_s(longer, 300) == sigterm_path_s(base, 300) + 2 * 60
    assert sigterm_path_s(base, 400) == sigterm_path_s(base, 300) + 100


def test_keda_scales_the_workers_on_the_ready_gauge(
    rendered: dict[str, list[Obj]], client: TestClient
) -> None:
    """The ScaledObject (a CRD, so checked field by field) targets the rendered worker
    Deployment, scales it from zero on a Prometheus query of the gauges /metrics serves, and
    owns its replicas (the Deployment no longer sets them)."""
    for overlay in OVERLAYS:
        objects = rendered[f"{overlay}+keda"]
        worker = one(objects, "Deployment", "hpo-worker")
        assert "replicas" not in worker["spec"]
        assert "replicas" in one(rendered[overlay], "Deployment", "hpo-worker")["spec"]
        scaled = one(objects, "ScaledObject", "hpo-worker")
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        assert scaled["metadata"]["namespace"] == worker["metadata"]["namespace"]
        spec = scaled["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "hpo-worker",
        }
        assert spec["minReplicaCount"] == 0
        assert spec["maxReplicaCount"] >= 1
        [trigger] = spec["triggers"]
        assert trigger["type"] == "prometheus"
        meta = trigger["metadata"]
        assert meta["serverAddress"].startswith("http")
        assert "hpo_trials_ready{" in meta["query"] and "hpo_trials_leased{" in meta["query"]
        assert 'task=~"mlp_classifier"' in meta["query"]
        # One slot per pod: one pod per trial ready or running.
        assert float(meta["threshold"]) == 1
        assert float(meta["activationThreshold"]) == 0
    # /metrics serves both gauges with that task label.
    study = {
        "name": "keda",
        "directions": ["minimize"],
        "search_space": {
            "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
            "n_layers": {"type": "int", "low": 1, "high": 3},
            "batch_size": {"type": "categorical", "choices": [32, 64]},
        },
        "task": {"name": "mlp_classifier", "dataset": "digits", "epochs": 2},
        "max_parallel": 3,
    }
    assert client.post("/api/v1/studies", json=study).status_code == 201
    text = client.get("/metrics").text
    assert 'hpo_trials_ready{task="mlp_classifier"} 3.0' in text
    assert 'hpo_trials_leased{task="mlp_classifier"} 0.0' in text


def test_an_overlay_of_your_own_sets_secrets_and_images_in_one_place(tmp_path: Path) -> None:
    """The docs' recipe: a directory outside the repository that takes an overlay, replaces
    the two Secrets from its own files, sets both images and adds KEDA."""
    (tmp_path / "database.env").write_text("HPO_DATABASE_URL=postgresql://u:p@db.corp:5432/hpo\n")
    (tmp_path / "tokens.env").write_text("HPO_API_TOKEN=hpo_mine\nHPO_METRICS_TOKEN=scrape-42\n")
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": NAMESPACE,
                "resources": [os.path.relpath(ROOT / "overlays" / "external-postgres", tmp_path)],
                "components": [os.path.relpath(ROOT / "keda", tmp_path)],
                "secretGenerator": [
                    {"name": "hpo-database", "behavior": "replace", "envs": ["database.env"]},
                    {"name": "hpo-tokens", "behavior": "replace", "envs": ["tokens.env"]},
                ],
                "images": [
                    {
                        "name": "ghcr.io/hpo-service/api",
                        "newName": "registry.corp/hpo/api",
                        "newTag": "1.2.3",
                    },
                    {
                        "name": "ghcr.io/hpo-service/worker",
                        "newName": "registry.corp/hpo/worker",
                        "newTag": "1.2.3",
                    },
                ],
            }
        )
    )
    objects = kustomize(tmp_path)
    secrets = {
        o["metadata"]["name"].rsplit("-", 1)[0]: {
            k: base64.b64decode(v).decode() for k, v in o["data"].items()
        }
        for o in objects
        if o["kind"] == "Secret"
    }
    assert secrets == {
        "hpo-database": {"HPO_DATABASE_URL": "postgresql://u:p@db.corp:5432/hpo"},
        "hpo-tokens": {"HPO_API_TOKEN": "hpo_mine", "HPO_METRICS_TOKEN": "scrape-42"},
    }
    images = {
        c["image"]
        for _, spec in pod_specs(objects)
        for c in spec.get("initContainers", []) + spec["containers"]
    }
    assert images == {"registry.corp/hpo/api:1.2.3", "registry.corp/hpo/worker:1.2.3"}
    assert one(objects, "ScaledObject", "hpo-worker")["spec"]["minReplicaCount"] == 0
