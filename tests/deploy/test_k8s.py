"""The Kubernetes manifests: every kustomization renders, every resource is schema-valid, and the
ports, probes, settings and scaling bounds agree with each other and with polyrec's settings."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import fields
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from stream.settings import Settings
from tests.deploy.test_compose import Dockerfile, onnx_graphs

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUSTOMIZATIONS = ["base", "overlays/keda-lag", "overlays/gpu"]
KUBERNETES_VERSION = "1.32.0"
CRD_SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"): "scaledobject_v1alpha1.json",
               ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor_v1.json"}
KUBECTL = shutil.which("kubectl")


def render(path: Path) -> list[dict]:
    """``kubectl kustomize`` output, as resources. Where kubectl is missing the test is skipped, but
    fails under ``.ci/run`` (``POLYREC_TEST_STRICT``): CI's machine has it, and a silent skip there
    would hide every manifest check."""
    if KUBECTL is None:
        if os.environ.get("POLYREC_TEST_STRICT"):
            pytest.fail("kubectl (with kustomize) is not installed, and POLYREC_TEST_STRICT is set")
        pytest.skip("kubectl (with kustomize) is not installed")
    out = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def schema_errors(resource: dict) -> list[str]:
    """Schema-check one resource (built-in kinds strictly, the custom ones with k8s/schemas/):
    one line per error, ``path: message``."""
    key = (resource["apiVersion"], resource["kind"])
    if key in CRD_SCHEMAS:
        schema = json.loads((K8S / "schemas" / CRD_SCHEMAS[key]).read_text())
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(resource))
    else:
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
            errors = []
        except kubernetes_validate.ValidationError as exc:
            errors = [exc]  # a jsonschema.ValidationError
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def one(resources: list[dict], kind: str) -> dict:
    found = [r for r in resources if r["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def settings_of(resources: list[dict], container: dict) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps and literal values."""
    maps = {r["metadata"]["name"]: r.get("data", {}) for r in resources if r["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in maps, f"envFrom names ConfigMap {name!r}, which is not rendered"
        env.update(maps[name])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def port_number(container: dict, port: int | str) -> int:
    """A probe's or Service's target port, resolved by name against the container."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port in named, f"port {port!r} is not a port of container {container['name']}"
    return named[port]


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(K8S / request.param)


def test_every_resource_is_schema_valid(rendered):
    name, resources = rendered
    assert resources, f"{name} rendered nothing"
    errors = [f"{resource['kind']}/{resource['metadata']['name']}: {line}"
              for resource in resources for line in schema_errors(resource)]
    assert not errors, f"{name}: invalid resources:\n" + "\n".join(errors)


def test_ports_probes_and_settings_agree(rendered):
    name, resources = rendered
    deployment = one(resources, "Deployment")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    env = settings_of(resources, container)
    known = {f.metadata["env"] for f in fields(Settings)}
    assert not set(env) - known, f"{name}: unknown settings {sorted(set(env) - known)}"
    secrets = {e["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    assert {"KAFKA_BOOTSTRAP", "REDIS_URL"} <= secrets, "broker and Redis credentials come from a Secret"

    settings = Settings.from_env(env)
    assert port_number(container, "web") == settings.web_port, "container port `web` is not POLYREC_WEB_PORT"
    assert port_number(container, "metrics") == settings.metrics_port, \
        "container port `metrics` is not POLYREC_METRICS_PORT"
    assert container["livenessProbe"]["httpGet"]["path"] == "/polyrec/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/polyrec/ready"
    for probe in ("livenessProbe", "readinessProbe"):
        assert port_number(container, container[probe]["httpGet"]["port"]) == settings.web_port, probe
    docker = Dockerfile(ROOT / "Dockerfile")
    assert Path(settings.encoder_path) in onnx_graphs(docker, docker.final), \
        f"POLYREC_ENCODER={settings.encoder_path} is not a graph the image builds"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 30
    assert deployment["spec"].get("replicas", 1) <= settings.partitions, "more workers than partitions idle"

    labels = pod["metadata"]["labels"]
    service = one(resources, "Service")
    assert service["spec"]["selector"].items() <= labels.items(), "the Service selects no worker pod"
    service_ports = {p["name"]: port_number(container, p["targetPort"]) for p in service["spec"]["ports"]}
    assert service_ports["metrics"] == settings.metrics_port
    monitor = one(resources, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= set(service_ports)
    pdb = one(resources, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the PDB protects no worker pod"
    assert "web" not in service_ports, "the web port (no auth) is exposed by the Service"


def test_the_pods_are_locked_down(rendered):
    """No API token, the runtime's seccomp profile, a read-only root file system with the data
    directory and /tmp on volumes, and ingress to the metrics port only, on the worker pods only."""
    name, resources = rendered
    pod = one(resources, "Deployment")["spec"]["template"]
    spec, (container,) = pod["spec"], pod["spec"]["containers"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {Settings.from_env(settings_of(resources, container)).data_dir, "/tmp"} <= mounts
    policy = one(resources, "NetworkPolicy")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector and selector.items() <= pod["metadata"]["labels"].items(), "the policy must select the workers"
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ports == ["metrics"], f"{name}: ingress beyond the metrics port: {ports}"


def test_keda_scales_on_the_workers_consumer_group():
    resources = render(K8S / "overlays/keda-lag")
    deployment = one(resources, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    settings = Settings.from_env(settings_of(resources, container))
    scaled = one(resources, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    assert scaled["maxReplicaCount"] == settings.partitions, "one worker per partition at most"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == settings.app_id
    assert trigger["metadata"]["topic"] == settings.events_topic
    assert trigger["metadata"]["bootstrapServersFromEnv"] in {e["name"] for e in container["env"]}


def test_gpu_overlay_puts_the_encoder_on_a_gpu_node():
    resources = render(K8S / "overlays/gpu")
    pod = one(resources, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert Settings.from_env(settings_of(resources, container)).encoder_provider == "cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert container["image"].endswith("-gpu"), "the GPU image variant has onnxruntime-gpu"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert pod["nodeSelector"]


def watch_gauge(worker, name: str, seen: list[float]) -> None:
    """Append every change of a worker's gauge to ``seen`` until its metrics server stops answering."""
    from tests.support import metric_value

    while True:
        try:
            value = metric_value(worker.metrics(), name)
        except (OSError, http.client.HTTPException):
            return
        if not seen or seen[-1] != value:
            seen.append(value)
        time.sleep(0.01)


@pytest.mark.integration
@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_sigterm_within_the_grace_period_commits_offsets_and_writes_redis(broker, workers, redis_client, tmp_path,
                                                                         store):
    """What the pod's grace period relies on: a worker stopped by SIGTERM as soon as its first events
    are processed, with thousands more queued, says it is not ready, exits 0 in time, commits the
    offsets of what it processed (no periodic commit here: only the stop can), and every user of a
    committed event has recommendations in Redis."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from polyrec_cli.harness import event_record, send_records
    from stream.recs import recs_key
    from tests.support import metric_value, read_topic, run, wait_for, worker_env

    grace = yaml.safe_load((K8S / "base" / "deployment.yaml").read_text())["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"]
    env = worker_env(broker, tmp_path, POLYREC_COMMIT_INTERVAL_S="300", POLYREC_STORE=store)
    settings = Settings.from_env(env)
    worker = workers.new(env)
    worker.wait_ready(90)
    run(send_records(broker, settings.events_topic, [event_record(f"u{n // 2}", f"i{n % 13}") for n in range(20_000)]))
    wait_for(lambda: metric_value(worker.metrics(), "polyrec_events_total") > 0, 60, what="the first events processed")

    assert metric_value(worker.metrics(), "polyrec_worker_ready") == 1
    readiness = []  # the gauge, scraped until the process is gone: it must read 0 while stopping
    watcher = threading.Thread(target=watch_gauge, args=(worker, "polyrec_worker_ready", readiness))
    watcher.start()
    started = time.monotonic()
    assert worker.stop(signal.SIGTERM, timeout=grace) == 0
    assert time.monotonic() - started < grace
    watcher.join()
    assert 0 in readiness, f"readiness gauge during SIGTERM: {readiness}"

    async def committed() -> dict[int, int]:
        """The group's committed offset of every events partition."""
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=settings.app_id, enable_auto_commit=False)
        await consumer.start()
        try:
            return {p: await consumer.committed(TopicPartition(settings.events_topic, p)) or 0
                    for p in range(settings.partitions)}
        finally:
            await consumer.stop()

    offsets = run(committed())
    covered = sorted({r.key.decode() for r in run(read_topic(broker, settings.events_topic, timeout=30))
                      if r.offset < offsets[r.partition]})
    assert covered, "SIGTERM committed no offsets"
    recs = redis_client.mget([recs_key(settings.redis_prefix, u) for u in covered])
    missing = [u for u, raw in zip(covered, recs) if raw is None]
    assert not missing, \
        f"{len(missing)} of {len(covered)} users of committed events have no recommendations: {missing[:5]}"
