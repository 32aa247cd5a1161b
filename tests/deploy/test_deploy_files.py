"""The deployment files agree with the schemas they are written against and with the gateway itself.

deploy/kubernetes/ (one gateway per line: StatefulSet, Service, the ConfigMap kustomize makes of
line.yaml, the Secret's shape) is validated strictly against the Kubernetes 1.31 API schemas with
kubernetes-validate, offline. Then, because a manifest can be valid and still not run the gateway,
`problems` checks what ties the files together: the container runs a `linegw run` of a line file
that is mounted and loads, the probes ask routes the gateway serves without a key, the port and
the store path agree between the image, the manifest and the environment, every secret the line
file names comes from the Secret, and the image and pod run as the same non-root user. The
checker is shown failing on broken copies. No container runtime or cluster is needed (or started).
"""

from __future__ import annotations

import copy
import shlex
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.api.app import create_app
from gateway.config import Api, load_line
from gateway.runtime.line import LineRuntime
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose"
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
K8S_VERSION = "1.31"


def containerfile(text: str) -> dict[str, Any]:
    """The runtime stage's instructions that matter here: USER, VOLUME, EXPOSE, ENV, ENTRYPOINT, CMD, FROM."""
    stage: dict[str, Any] = {"ENV": {}}
    logical = text.replace("\\\n", " ").splitlines()
    for line in logical:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        word, _, rest = line.strip().partition(" ")
        if word == "FROM":
            stage = {"ENV": {}, "FROM": rest.split()[0]}  # the last stage is the image
        elif word == "ENV":
            stage["ENV"].update(dict(pair.split("=", 1) for pair in shlex.split(rest)))
        elif word in ("ENTRYPOINT", "CMD"):
            stage[word] = yaml.safe_load(rest)  # exec form: a JSON list
        else:
            stage[word] = rest.strip()
    return stage


def kustomized(kustomization: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """The resources `kubectl apply -k` creates: the listed files and the generated ConfigMaps."""
    docs = [yaml.safe_load((folder / name).read_text()) for name in kustomization["resources"]]
    for gen in kustomization.get("configMapGenerator", []):
        assert gen.get("options", {}).get("disableNameSuffixHash"), "the StatefulSet names the ConfigMap as is"
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]},
                     "data": {Path(f).name: (folder / f).read_text() for f in gen["files"]}})
    return docs


def load_files() -> dict[str, Any]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return {"resources": kustomized(kustomization, K8S),
            "secret": yaml.safe_load((K8S / "secret.example.yaml").read_text()),
            "image": containerfile(CONTAINERFILE.read_text()),
            "compose": yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())}


def served_routes() -> set[str]:
    spec = load_spec()
    store = SqliteStore("/nonexistent/never-opened.sqlite")
    cfg = load_line(K8S / "line.yaml", secrets=False, spec=spec)
    # The routes do not depend on the keys (which the test has no values for): served with none.
    return set(create_app(LineRuntime(cfg, spec, store), store, spec, Api()).openapi()["paths"])


def line_problems(text: str, where: str, tmp: Path) -> tuple[list[str], Any]:
    path = tmp / "line.yaml"
    path.write_text(text)
    try:
        return [], load_line(path, secrets=False, spec=load_spec())
    except Exception as exc:
        return [f"{where}: the line file does not load: {exc}"], None


def problems(files: dict[str, Any], routes: set[str], tmp: Path) -> list[str]:
    """What keeps these files from running the gateway, one sentence each; [] when nothing does."""
    out: list[str] = []
    by_kind = {d["kind"]: d for d in files["resources"]}
    sts, service, config = by_kind.get("StatefulSet"), by_kind.get("Service"), by_kind.get("ConfigMap")
    if sts is None or service is None or config is None:
        return [f"expected a StatefulSet, a Service and a ConfigMap, got {sorted(by_kind)}"]
    pod = sts["spec"]["template"]["spec"]
    [box] = pod["containers"]
    env = {e["name"]: e.get("value") for e in box.get("env", [])}
    mounts = {m["name"]: m for m in box.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    image = files["image"]

    if sts["spec"]["replicas"] != 1:
        out.append("StatefulSet: replicas must be 1 (one process writes the line's store)")
    args = box.get("args", image.get("CMD"))
    if image.get("ENTRYPOINT") != ["linegw"] or not args or args[0] != "run" or len(args) != 2:
        out.append(f"container: expected the image's linegw entry point with args [run, <line file>], got {args}")
        return out
    line_path = Path(args[1])
    mount = next((m for m in mounts.values() if line_path.parent == Path(m["mountPath"])), None)
    source = volumes.get(mount["name"], {}).get("configMap", {}).get("name") if mount else None
    if mount is None or source != config["metadata"]["name"] or line_path.name not in config.get("data", {}):
        out.append(f"container: the line file {line_path} is not a key of ConfigMap {config['metadata']['name']} "
                   "mounted at its folder")
        line = None
    else:
        found, line = line_problems(config["data"][line_path.name], f"ConfigMap {config['metadata']['name']}", tmp)
        out += found

    port = next((p["containerPort"] for p in box.get("ports", []) if p.get("name") == "http"), None)
    if str(port) != env.get("LINEGW_PORT") or image.get("EXPOSE") != str(port):
        out.append(f"port: containerPort {port}, LINEGW_PORT {env.get('LINEGW_PORT')} and the image's EXPOSE "
                   f"{image.get('EXPOSE')} differ")
    if env.get("LINEGW_HOST") != "0.0.0.0":
        out.append("LINEGW_HOST: the API must listen on 0.0.0.0 in a pod (127.0.0.1 is the pod's own loopback)")
    if service["spec"]["ports"][0]["targetPort"] not in ("http", port):
        out.append(f"Service: targetPort {service['spec']['ports'][0]['targetPort']} is not the container's port")
    if service["spec"]["selector"] != sts["spec"]["selector"]["matchLabels"]:
        out.append("Service: its selector does not select the StatefulSet's pods")

    store = Path(env.get("LINEGW_STORE") or "")
    store_mount = next((m for m in mounts.values() if Path(m["mountPath"]) in store.parents), None)
    if store_mount is None or store_mount["name"] not in claims:
        out.append(f"LINEGW_STORE {store} is not on a volume of the StatefulSet's claims {sorted(claims)}")
    if image.get("VOLUME") != str(store.parent) or image["ENV"].get("LINEGW_STORE") != str(store):
        out.append(f"image: VOLUME {image.get('VOLUME')} and LINEGW_STORE {image['ENV'].get('LINEGW_STORE')} "
                   f"are not the manifest's store {store}")

    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = box.get(name, {}).get("httpGet", {})
        if probe.get("path") not in routes or probe.get("path", "").startswith("/api/"):
            out.append(f"{name}: {probe.get('path')} is not a route the gateway answers without a key "
                       "(/readyz, /livez)")

    user = pod.get("securityContext", {}).get("runAsUser")
    if not pod.get("securityContext", {}).get("runAsNonRoot") or str(user) != image.get("USER", "").split(":")[0]:
        out.append(f"user: the pod runs as {user}, the image as {image.get('USER')}; both must be the same non-root uid")

    secret_names = {s["secretRef"]["name"] for s in box.get("envFrom", []) if "secretRef" in s}
    secret = files["secret"]
    if line is not None:
        needed = {k.key_env for k in line.api.keys}
        needed |= {eq.security.password_env for eq in line.equipment if eq.security.password_env}
        if line.forward and line.forward.influx and line.forward.influx.token_env:
            needed.add(line.forward.influx.token_env)
        if line.forward and line.forward.mqtt and line.forward.mqtt.password_env:
            needed.add(line.forward.mqtt.password_env)
        missing = needed - set(secret.get("stringData", {})) - set(env)
        if secret["metadata"]["name"] not in secret_names or missing:
            out.append(f"secrets: {sorted(missing) or 'the Secret'} not given to the container "
                       f"(envFrom {sorted(secret_names)}, Secret {secret['metadata']['name']})")
    return out


@pytest.fixture(scope="module")
def routes() -> set[str]:
    return served_routes()


def test_the_manifests_follow_the_kubernetes_schemas_strictly():
    files = load_files()
    for doc in [*files["resources"], files["secret"]]:
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION
    broken = copy.deepcopy(files["resources"][1])
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {"path": "/livez"}
    with pytest.raises(kubernetes_validate.ValidationError, match="httpGett"):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_the_manifests_the_image_and_the_gateway_agree(routes, tmp_path):
    assert {"/readyz", "/livez"} <= routes
    assert problems(load_files(), routes, tmp_path) == []


def sts_of(files: dict[str, Any]) -> dict[str, Any]:
    return next(d for d in files["resources"] if d["kind"] == "StatefulSet")


def box_of(files: dict[str, Any]) -> dict[str, Any]:
    return sts_of(files)["spec"]["template"]["spec"]["containers"][0]


def config_of(files: dict[str, Any]) -> dict[str, Any]:
    return next(d for d in files["resources"] if d["kind"] == "ConfigMap")


BREAKS = [
    ("a probe on the keyed API", lambda f: box_of(f)["readinessProbe"]["httpGet"].update(path="/api/v1/ready"),
     "readinessProbe: /api/v1/ready is not a route"),
    ("a probe on no route", lambda f: box_of(f)["livenessProbe"]["httpGet"].update(path="/healthz"),
     "livenessProbe: /healthz is not a route"),
    ("the line file elsewhere", lambda f: box_of(f).update(args=["run", "/etc/other/line.yaml"]),
     "the line file /etc/other/line.yaml is not a key"),
    ("a line file with a typo", lambda f: config_of(f)["data"].update(
        {"line.yaml": config_of(f)["data"]["line.yaml"].replace("class: winder", "class: windr")}),
     "the line file does not load"),
    ("the store off the volume", lambda f: box_of(f)["env"][2].update(value="/tmp/line.sqlite"),
     "LINEGW_STORE /tmp/line.sqlite is not on a volume"),
    ("another port", lambda f: box_of(f)["env"][1].update(value="9090"), "port: containerPort 8080, LINEGW_PORT 9090"),
    ("loopback only", lambda f: box_of(f)["env"][0].update(value="127.0.0.1"), "LINEGW_HOST"),
    ("root", lambda f: sts_of(f)["spec"]["template"]["spec"]["securityContext"].update(runAsUser=0),
     "user: the pod runs as 0"),
    ("two replicas", lambda f: sts_of(f)["spec"].update(replicas=2), "replicas must be 1"),
    ("a key the Secret lacks", lambda f: f["secret"]["stringData"].pop("LINEGW_KEY_ENGINEER"),
     "secrets: ['LINEGW_KEY_ENGINEER'] not given"),
    ("the image's volume elsewhere", lambda f: f["image"].update(VOLUME="/data"), "image: VOLUME /data"),
]


@pytest.mark.parametrize("what, breaks, expected", BREAKS, ids=[b[0] for b in BREAKS])
def test_the_checker_finds_each_broken_tie(routes, tmp_path, what, breaks, expected):
    files = load_files()
    breaks(files)
    found = problems(files, routes, tmp_path)
    assert any(expected in p for p in found), found


def test_the_compose_file_builds_this_image_and_mounts_a_line_file_that_loads(tmp_path):
    compose = load_files()["compose"]
    gw = compose["services"]["linegw"]
    assert (COMPOSE / gw["build"]["context"] / gw["build"]["dockerfile"]).resolve() == CONTAINERFILE
    line_mount = next(v for v in gw["volumes"] if v.endswith(":/etc/linegw/line.yaml:ro"))
    line_file = (COMPOSE / line_mount.split(":")[0]).resolve()
    cfg = load_line(line_file, secrets=False, spec=load_spec())
    # The forwarders reach the compose services by name, and the token the line file names is passed in.
    assert cfg.forward.influx.url == "http://influxdb:8086" and cfg.forward.mqtt.host == "mosquitto"
    assert {"influxdb", "mosquitto", "grafana"} <= set(compose["services"])
    assert cfg.forward.influx.token_env in gw["environment"]
    store_volume = next(v for v in gw["volumes"] if v.endswith(":/var/lib/linegw"))
    assert store_volume.split(":")[0] in compose["volumes"]
    assert (COMPOSE / compose["services"]["mosquitto"]["volumes"][0].split(":")[0]).is_file()


def test_the_image_s_python_is_one_the_package_supports():
    image = containerfile(CONTAINERFILE.read_text())
    version = image["FROM"].split(":")[1].split("-")[0]
    major, minor = (int(x) for x in version.split("."))
    assert (major, minor) >= (3, 11) and sys.version_info[:2] >= (3, 11)


def test_the_sparkplug_example_is_two_lines_of_one_group_under_one_primary_host():
    lines = [load_line(ROOT / "deploy" / "sparkplug" / f"line{n}.yaml", secrets=False, spec=load_spec()) for n in (1, 2)]
    nodes = {(c.forward.sparkplug.group_id, c.forward.sparkplug.edge_node_id or c.line) for c in lines}
    assert len(nodes) == 2 and {g for g, _ in nodes} == {"plant1"}  # two edge nodes of one group
    assert {c.forward.sparkplug.primary_host_id for c in lines} == {"scada"}
    assert lines[0].api.port != lines[1].api.port and lines[0].store.path != lines[1].store.path
