"""Deploy files, checked without a Docker engine: the Dockerfile and compose file parse and
name files that exist, every variable is documented, the systemd unit passes
`systemd-analyze verify`, the Kubernetes manifests validate against the bundled schemas, and
the image's entry command runs from a wheel in a fresh virtual environment."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.httpserver import FeedServer

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_non_root_with_healthcheck_and_entrypoint() -> None:
    steps = dockerfile()
    known = {
        "FROM",
        "WORKDIR",
        "COPY",
        "RUN",
        "ENV",
        "USER",
        "VOLUME",
        "EXPOSE",
        "HEALTHCHECK",
        "ENTRYPOINT",
        "CMD",
        "ARG",
        "LABEL",
    }
    assert {word for word, _ in steps} <= known
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) == 2 and all("slim" in f for f in froms)
    assert [args for word, args in steps if word == "USER"] == ["watcher"]
    (health,) = [args for word, args in steps if word == "HEALTHCHECK"]
    assert "/healthz" in health
    assert [args for word, args in steps if word == "ENTRYPOINT"] == ['["watcher"]']
    (cmd,) = [args for word, args in steps if word == "CMD"]
    assert "0.0.0.0:9464" in cmd
    assert any("--no-index" in args and "/wheels" in args for word, args in steps if word == "RUN")
    assert '["/data"]' in [args for word, args in steps if word == "VOLUME"]
    for word, args in steps:
        if word == "COPY" and "--from" not in args:
            *sources, _target = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
        if word == "ENV":
            assert not re.search(r"PASSWORD|TOKEN|SECRET", args), "no secrets baked in"
    # the documented `docker run`s publish on this machine's loopback only
    comments = [
        line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line[:1] == "#"
    ]
    published = re.findall(r"\s-p\s+(\S+)", "\n".join(comments))
    assert published and all(p.startswith("127.0.0.1:") for p in published), published


def _variables(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))


def test_compose_file_parses_and_every_variable_is_documented() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"watcher", "postgres", "web"}
    watcher = services["watcher"]
    assert (DEPLOY / watcher["build"]["context"] / watcher["build"]["dockerfile"]).is_file()
    assert watcher["restart"] == services["postgres"]["restart"] == "unless-stopped"
    assert watcher["env_file"] == ".env"
    assert watcher["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "0.0.0.0:9464" in watcher["command"]
    assert set(compose["volumes"]) == {"postgres-data", "watcher-data"}
    assert "WATCHER_DATABASE_URL" in watcher["environment"]
    for name, service in services.items():
        if name == "postgres":
            continue
        # the folder of sources.yaml, not the file: a save by rename reaches the container
        mounts = dict(v.split(":")[:2] for v in service["volumes"])
        assert mounts[".."] == "/config", name
        assert (DEPLOY / "..").resolve() == ROOT
        assert service["environment"]["WATCHER_CONFIG"] == "/config/sources.yaml", name
        for source in mounts:
            if source.startswith("."):
                assert (DEPLOY / source).is_dir(), (name, source)

    # published on this machine's loopback only
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)

    # watcher serve, on the daemon's database and sources.yaml, with a token
    web = services["web"]
    assert web["image"] == watcher["image"] and web["build"] == watcher["build"]
    assert web["restart"] == "unless-stopped" and web["env_file"] == ".env"
    assert web["depends_on"]["watcher"]["condition"] == "service_healthy"  # migrated
    assert (
        web["environment"]["WATCHER_DATABASE_URL"] == watcher["environment"]["WATCHER_DATABASE_URL"]
    )
    command = web["command"]
    assert command[command.index("--address") + 1] == "0.0.0.0:8080" and "serve" in command
    token = command[command.index("--token-env") + 1]
    assert web["environment"][token].startswith(
        "${" + token + ":?"
    )  # compose refuses to start without it
    assert web["ports"] == ["127.0.0.1:8080:8080"]
    check = " ".join(web["healthcheck"]["test"])
    assert "http://127.0.0.1:8080/'" in check and token in check and "9464" not in check

    documented = set(
        re.findall(r"^([A-Z_][A-Z0-9_]*)=", (DEPLOY / ".env.example").read_text(), re.M)
    )
    assert token in documented
    used = _variables((DEPLOY / "compose.yaml").read_text())
    used |= _variables((ROOT / "sources.yaml").read_text()) - {"VAR"}  # "${VAR}" explains syntax
    assert used <= documented, used - documented


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["watcher.service", "watcher-web.service"])
def test_systemd_unit_verifies(tmp_path: Path, name: str) -> None:
    unit = (DEPLOY / name).read_text()
    if name == "watcher-web.service":
        assert "serve --address 127.0.0.1:8080 --token-env WATCHER_WEB_TOKEN" in unit
        assert "ExecReload=/bin/kill -HUP $MAINPID" in unit  # serve re-reads sources.yaml
    # the repository's docs (the wheel installs none)
    (docs,) = re.findall(r"^Documentation=(\S+)$", unit, re.M)
    prefix = "https://github.com/watcher-project/watcher/blob/main/"
    assert docs.startswith(prefix) and (ROOT / docs.removeprefix(prefix)).is_file(), docs
    for needed in (
        "Restart=on-failure",
        "EnvironmentFile=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=watcher",
        "ExecReload=/bin/kill -HUP",
        "User=watcher",
    ):
        assert needed in unit, needed
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    copy = tmp_path / "watcher-test.service"
    copy.write_text(
        unit.replace("/opt/watcher/bin/watcher", str(Path(sys.prefix) / "bin" / "watcher")).replace(
            "EnvironmentFile=/", "EnvironmentFile=-/"
        )
    )
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "watcher-test.service" not in result.stderr, result.stderr


def test_kubernetes_manifests_validate_and_run_replicas_with_probes() -> None:
    import kubernetes_validate

    docs = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(doc, desired_version="1.30", strict=True)
            docs[doc["kind"], doc["metadata"]["name"]] = doc
    assert set(docs) == {
        ("Deployment", "watcher"),
        ("Deployment", "watcher-web"),
        ("ConfigMap", "watcher-config"),
        ("Secret", "watcher-secrets"),
        ("Service", "watcher-metrics"),
        ("Service", "watcher-web"),
    }
    spec = docs["Deployment", "watcher"]["spec"]
    assert spec["replicas"] >= 2
    container = spec["template"]["spec"]["containers"][0]
    assert container["name"] == "watcher" and "0.0.0.0:9464" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]["memory"]
    env = {e["name"]: e for e in container["env"]}
    assert env["WATCHER_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "watcher-secrets"
    config = docs["ConfigMap", "watcher-config"]
    assert config["data"]["sources.yaml"] == (ROOT / "sources.yaml").read_text(), (
        "deploy/k8s/configmap.yaml must carry the current sources.yaml"
    )

    # watcher serve: its own pods (which neither the daemon's Deployment nor the metrics
    # Service selects), the same Secret and ConfigMap, a ClusterIP Service
    web = docs["Deployment", "watcher-web"]["spec"]
    labels = web["template"]["metadata"]["labels"]
    daemon_labels = spec["template"]["metadata"]["labels"]
    for selector in (
        spec["selector"]["matchLabels"],
        docs["Service", "watcher-metrics"]["spec"]["selector"],
    ):
        assert not selector.items() <= labels.items()
    assert web["selector"]["matchLabels"].items() <= labels.items()
    assert not web["selector"]["matchLabels"].items() <= daemon_labels.items()
    (server,) = web["template"]["spec"]["containers"]
    args = server["args"]
    assert "serve" in args and args[args.index("--address") + 1] == "0.0.0.0:8080"
    token = args[args.index("--token-env") + 1]
    env = {e["name"]: e for e in server["env"]}
    for key in ("WATCHER_DATABASE_URL", token):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "watcher-secrets", "key": key}
    assert env["WATCHER_CONFIG"]["value"] == "/config/sources.yaml"
    (volume,) = [v for v in web["template"]["spec"]["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == "watcher-config"
    assert "http://127.0.0.1:8080/'" in " ".join(server["readinessProbe"]["exec"]["command"])
    assert token in " ".join(server["livenessProbe"]["exec"]["command"])
    assert server["resources"]["requests"]["memory"]
    service = docs["Service", "watcher-web"]["spec"]
    assert service["type"] == "ClusterIP" and service["selector"].items() <= labels.items()
    assert [p["port"] for p in service["ports"]] == [8080]


def test_the_reload_loops_reach_every_replica_of_each_deployment() -> None:
    """The comments' `kubectl get pods -l ...` loops select the pods of a Deployment (one
    `kubectl exec deploy/...` reaches one pod only)."""
    labels = {}
    comments = ""
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        text = path.read_text()
        comments += "\n".join(line for line in text.splitlines() if line[:1] == "#")
        for doc in yaml.safe_load_all(text):
            if doc["kind"] == "Deployment":
                labels[doc["metadata"]["name"]] = doc["spec"]["template"]["metadata"]["labels"]
    selected = re.findall(r"kubectl get pods -l ([\w./-]+)=([\w.-]+) ", comments)
    reached = {
        name for name, pod in labels.items() for key, value in selected if pod.get(key) == value
    }
    assert reached == set(labels) and len(selected) >= len(labels), selected
    assert "watcher reload" in comments and "kill -HUP 1" in comments
    assert "docker push" in comments  # the operator builds and pushes the image


def test_memory_limits_cover_the_worst_case_of_the_default_settings() -> None:
    """docs/operations.md: the main process (~80 MiB) plus parse_processes x (45 MiB +
    parse_memory); parse_processes 0 means min(CPUs, 4), the host's CPUs."""
    from watcher.config.models import Settings

    settings = Settings()
    assert settings.parse_processes == 0  # else the worst case below is not the default's
    mib = 1024 * 1024
    worst = 80 * mib + 4 * (45 * mib + settings.parse_memory)
    (deployment,) = [
        doc
        for doc in yaml.safe_load_all((DEPLOY / "k8s" / "deployment.yaml").read_text())
        if doc["kind"] == "Deployment"
    ]
    limit = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limit["memory"].endswith("Mi") and int(limit["memory"][:-2]) * mib >= worst
    (unit,) = re.findall(r"^MemoryMax=(\d+)M$", (DEPLOY / "watcher.service").read_text(), re.M)
    assert int(unit) * mib >= worst  # systemd's M is 1024 x 1024


def test_the_documented_secret_holds_what_the_pods_need() -> None:
    """The Secret the header's command makes (deploy/.env plus the lines it adds) and the one
    in the file hold every key a Deployment requires and every ${VAR} of sources.yaml."""
    text = (DEPLOY / "k8s" / "secret.yaml").read_text()
    (secret,) = yaml.safe_load_all(text)
    required = set()
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    for env in container.get("env", []):
                        ref = env.get("valueFrom", {}).get("secretKeyRef")
                        if ref and not ref.get("optional"):
                            assert ref["name"] == secret["metadata"]["name"]
                            required.add(ref["key"])
    assert "WATCHER_DATABASE_URL" in required
    channels = _variables((ROOT / "sources.yaml").read_text()) - {"VAR"}
    assert required | channels <= set(secret["stringData"]), (required | channels) - set(
        secret["stringData"]
    )

    comment = "\n".join(
        line.lstrip("# ") for line in text.splitlines() if line.startswith("#")
    ).replace("\\\n", " ")
    (command,) = re.findall(r"kubectl create secret generic [^\n]*", comment)
    assert "--from-env-file=" in command
    # kubectl: "from-env-file cannot be combined with from-file or from-literal"
    assert "--from-literal" not in command and "--from-file" not in command
    env_file = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", (DEPLOY / ".env.example").read_text(), re.M))
    added = set(re.findall(r"([A-Z_][A-Z0-9_]*)=%s", command))
    assert not added & env_file, "kubectl refuses a key given twice"
    assert required | channels <= env_file | added, (required | channels) - env_file - added


def _command_lines() -> dict[str, list[str]]:
    """Every `watcher ...` command line the deploy files run (the arguments after `watcher`)."""
    import json
    import shlex

    lines = {}
    (cmd,) = [args for word, args in dockerfile() if word == "CMD"]
    lines["Dockerfile CMD"] = json.loads(cmd)
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        if "command" in service and name != "postgres":
            lines[f"compose {name}"] = service["command"]
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    lines[f"{path.name} {container['name']}"] = container["args"]
    for path in sorted(DEPLOY.glob("*.service")):
        (start,) = re.findall(r"^ExecStart=(.*)$", path.read_text(), re.M)
        binary, *args = shlex.split(start)
        assert binary == "/opt/watcher/bin/watcher", path.name
        lines[path.name] = args
    return lines


def test_every_deployed_command_line_parses() -> None:
    """Options of `watcher` itself (--log-format) go before the command: `watcher run
    --log-format json` stops at start with "No such option"."""
    from click.testing import CliRunner

    from watcher.cli import cli

    lines = _command_lines()
    assert len(lines) >= 4, lines
    for where, args in lines.items():
        result = CliRunner().invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, f"{where}: {args}: {result.output}"


@pytest.mark.e2e
def test_the_image_entry_command_runs_from_the_wheel(tmp_path: Path) -> None:
    """What the image does, outside Docker: install the wheel with no index, run it."""
    dist = tmp_path / "dist"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("watcher-*.whl")
    venv = tmp_path / "venv"
    # no pip of its own (bootstrapping one costs seconds): this pip installs into it
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # the test venv's packages stand in for the image's dependency layer
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "deps.pth").write_text("\n".join(deps) + "\n")
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    install = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    where = subprocess.run(
        [str(python), "-c", "import watcher.templates, watcher; print(watcher.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr

    with FeedServer() as server:
        server.route(
            "/feed",
            body=b'<?xml version="1.0"?><rss version="2.0"><channel><title>T'
            b"</title><item><title>One</title><link>https://e.org/1</link></item>"
            b"</channel></rss>",
        )
        cfg = tmp_path / "sources.yaml"
        cfg.write_text(
            f"sources:\n  - {{id: f, kind: feed, url: '{server.url('/feed')}'}}\n"
            "settings: {allow_private_addresses: true}\n"
        )
        run = subprocess.run(
            [
                str(venv / "bin" / "watcher"),
                "--config",
                str(cfg),
                "--db",
                f"sqlite:///{tmp_path / 'w.db'}",
                "run",
                "--once",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr
    assert "database migrated from empty to" in run.stderr  # migrations ship in the wheel
    assert "1 new items" in run.stderr
