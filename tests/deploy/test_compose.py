"""docker-compose.yml and the Dockerfile: schema-valid, every referenced file present, ports and
settings consistent across services, and a runtime image without torch. Plus the compose
topic-init job's command, ``polyrec topics``, against a real broker."""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from stream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
HEAVY_EXTRAS = {"export", "eval"}  # torch, transformers, implicit, matplotlib: never in the runtime image


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def compose_schema() -> dict:
    """The Compose Specification's JSON schema, as vendored (from SchemaStore) by check-jsonschema."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def service_settings(service: dict) -> Settings:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return Settings.from_env({k: str(v) for k, v in env.items()})


def bind_mounts(service: dict) -> dict[str, str]:
    """container path -> host path of every bind mount (short syntax) of a service."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            out[target] = source
    return out


def prometheus_args(service: dict) -> dict[str, str]:
    """The ``--flag=value`` arguments of the prometheus service's command."""
    return dict(a.removeprefix("--").split("=", 1) for a in service["command"])


def mounted_file(service: dict, container_path: str) -> Path:
    """The host file behind ``container_path`` in a service, through its bind mounts."""
    for target, source in bind_mounts(service).items():
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return ROOT / source / Path(container_path).relative_to(target)
    raise AssertionError(f"{container_path} is not mounted from the repository")


def test_compose_file_matches_the_compose_spec():
    errors = jsonschema.Draft7Validator(compose_schema()).iter_errors(compose())
    lines = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
    assert not lines, "docker-compose.yml does not match the Compose Specification:\n" + "\n".join(lines)


def test_compose_references_existing_files():
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name}: no {dockerfile} in {context}"
        for target, source in bind_mounts(service).items():
            assert (ROOT / source).exists(), f"{name}: mounts missing {source} at {target}"


def test_compose_ports_and_settings_agree():
    services = compose()["services"]
    worker, prometheus = services["worker"], services["prometheus"]
    settings = service_settings(worker)
    assert "ports" not in worker, "fixed host ports would stop `--scale worker=N`"
    assert {str(settings.web_port), str(settings.metrics_port)} <= {str(p) for p in worker.get("expose", [])}
    assert service_settings(services["topics"]) == settings, "topic-init and worker must agree on topics"
    assert services["topics"]["command"] == ["topics"]

    # Prometheus scrapes every worker replica on its metrics port
    args = prometheus_args(prometheus)
    config = yaml.safe_load(mounted_file(prometheus, args["config.file"]).read_text())
    targets = set()
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            targets |= {(name, sd["port"]) for name in sd["names"]}
        for static in job.get("static_configs", []):
            targets |= {(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in static["targets"]}
    assert ("worker", settings.metrics_port) in targets, f"no scrape target is the workers' metrics port: {targets}"

    # Grafana's data source is the prometheus service, on the port it listens on
    grafana = services["grafana"]
    prom_port = int(args.get("web.listen-address", ":9090").rsplit(":", 1)[1])
    provisioning = mounted_file(grafana, "/etc/grafana/provisioning")
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    url = urlsplit(source["url"])
    assert (url.hostname, url.port) == ("prometheus", prom_port)
    for provider in yaml.safe_load((provisioning / "dashboards" / "polyrec.yml").read_text())["providers"]:
        folder = mounted_file(grafana, provider["options"]["path"])
        assert (folder / "polyrec.json").is_file(), f"Grafana's dashboard folder {folder} has no polyrec.json"


def test_prometheus_config_and_alert_rules_are_valid():
    assert shutil.which("promtool"), "promtool is missing: `make test` installs it (Debian package prometheus)"
    prometheus = compose()["services"]["prometheus"]
    config = mounted_file(prometheus, prometheus_args(prometheus)["config.file"])
    out = subprocess.run(["promtool", "check", "config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alerts_fire_on_what_they_are_meant_to_catch():
    """deploy/prometheus/alerts_test.yml: synthetic series through the alert rules (an idle worker's
    zero loss is no divergence; one failing batch fires once its counter's zero was scraped)."""
    assert shutil.which("promtool"), "promtool is missing: `make test` installs it (Debian package prometheus)"
    out = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=ROOT / "deploy" / "prometheus",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


class Dockerfile:
    """The stages of a Dockerfile: name -> instructions, ARG defaults substituted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stages: dict[str, list[tuple[str, str]]] = {}
        args: dict[str, str] = {}
        current: list[tuple[str, str]] | None = None
        for item in DockerfileParser(str(path)).structure:
            instruction, value = item["instruction"], item["value"]
            if instruction == "COMMENT":
                continue
            value = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), value)
            if instruction == "ARG" and "=" in value:
                name, default = value.split("=", 1)
                args[name] = default
            if instruction == "FROM":
                words = value.split()
                name = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else str(len(self.stages))
                current = self.stages.setdefault(name, [])
            elif current is not None:
                current.append((instruction, value))

    def runs(self, stage: str) -> list[str]:
        return [v for i, v in self.stages[stage] if i == "RUN"]

    @property
    def final(self) -> str:
        return list(self.stages)[-1]


def pip_extras(command: str) -> set[str]:
    """Extras of every ``pip install ".[a,b]"`` in a RUN command."""
    return {e.strip() for m in re.finditer(r"\.\[([\w,\s-]+)\]", command) for e in m.group(1).split(",")}


def test_dockerfile_stages_and_runtime_image():
    docker = Dockerfile(ROOT / "Dockerfile")
    ignored = set((ROOT / ".dockerignore").read_text().split())
    runtime = docker.stages[docker.final]
    for stage, instructions in docker.stages.items():
        for instruction, value in instructions:
            if instruction != "COPY":
                continue
            words = shlex.split(value)
            source = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            if source is not None:
                assert source in list(docker.stages)[:list(docker.stages).index(stage)], \
                    f"stage {stage} copies from {source!r}, which is not an earlier stage"
                continue
            for path in [w for w in words if not w.startswith("--")][:-1]:
                assert (ROOT / path).exists() and path not in ignored, f"COPY {path}: not in the build context"

    # setuptools refuses to build polyrec without the files pyproject.toml names
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    named = {project["readme"], *project["license-files"]}
    for stage, instructions in docker.stages.items():
        if any(pip_extras(c) for c in docker.runs(stage)):
            copied = {w for i, v in instructions if i == "COPY" for w in shlex.split(v)[:-1]}
            assert named <= copied, f"stage {stage} builds polyrec without {named - copied}"

    extras = pyproject_extras()
    runtime_extras = set().union(*(pip_extras(c) for c in docker.runs(docker.final)))
    assert runtime_extras, "the runtime stage installs polyrec"
    assert runtime_extras <= set(extras), f"unknown extras {runtime_extras - set(extras)}"
    assert not runtime_extras & HEAVY_EXTRAS, f"runtime image installs {runtime_extras & HEAVY_EXTRAS}"
    runtime_reqs = " ".join(" ".join(extras[e]) for e in runtime_extras) + " ".join(docker.runs(docker.final))
    assert "torch" not in runtime_reqs, "the runtime image must not install torch"

    # the encoder the runtime points at is one the model stage exports, copied in
    env = dict(v.split("=", 1) for i, value in runtime if i == "ENV" for v in value.split())
    assert Path(env["POLYREC_ENCODER"]) in onnx_graphs(docker, docker.final), \
        f"{env['POLYREC_ENCODER']} is not built into the image"
    exposed = {int(p) for i, v in runtime if i == "EXPOSE" for p in v.split()}
    defaults = Settings()
    assert {defaults.web_port, defaults.metrics_port} <= exposed
    entrypoint = [json.loads(v) for i, v in runtime if i == "ENTRYPOINT"]
    assert entrypoint == [["polyrec"]], "exec-form entrypoint, so the worker itself gets SIGTERM"


def onnx_graphs(docker: Dockerfile, stage: str) -> set[Path]:
    """Where in ``stage`` the ONNX graphs exported (``--out x.onnx``) by earlier stages land via COPY --from."""
    out = set()
    for instruction, value in docker.stages[stage]:
        if instruction != "COPY" or not value.startswith("--from="):
            continue
        source_stage, src, dst = shlex.split(value.removeprefix("--from="))
        for run in docker.runs(source_stage):
            for graph in map(Path, re.findall(r"--out (\S+\.onnx)", run)):
                if graph.is_relative_to(src):
                    out.add(Path(dst) / graph.relative_to(src))
    return out


def pyproject_extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


@pytest.mark.integration
def test_topics_command_creates_the_topics(broker, tmp_path, monkeypatch, capsys):
    from polyrec_cli.main import main
    from stream.topics import COMPACTED, topic_specs
    from tests.support import run, topic_configs, topic_partitions, worker_env

    env = worker_env(broker, tmp_path)
    for key in ("KAFKA_BOOTSTRAP", "POLYREC_APP_ID", "POLYREC_EVENTS_TOPIC", "POLYREC_ITEMS_TOPIC"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setenv("POLYREC_PARTITIONS", "3")
    assert main(["topics"]) == 0
    assert main(["topics"]) == 0  # idempotent

    specs = topic_specs(Settings.from_env())
    names = [s.name for s in specs]
    assert run(topic_partitions(broker, names)) == {s.name: 3 for s in specs}
    configs = run(topic_configs(broker, names))
    assert {name: c.get("cleanup.policy", "delete") for name, c in configs.items()} == {
        s.name: "compact" if s.compacted else "delete" for s in specs}
    assert all(configs[s.name]["min.compaction.lag.ms"] == COMPACTED["min.compaction.lag.ms"]
               for s in specs if s.compacted)
    assert "compacted" in capsys.readouterr().out
