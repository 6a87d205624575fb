"""Generate what is derived from the operator's code and the chart, and check it for drift.

    python charts/generate.py            # write the files below (`make manifests` also writes crds/)
    python charts/generate.py --check    # exit 1 when a committed file differs

- charts/tfjob-operator/files/node-pool-policy.json: the node-pool ValidatingAdmissionPolicy
  the operator would install (operator/tfjob_operator/core/admission.py), with a placeholder for the
  pool list. The chart fills it in, so the policy it ships is the operator's, by construction.
- deploy/: plain manifests for `kubectl apply -f deploy/` and GitOps: the chart with its default
  values, released as `tfjob-operator` in the namespace `tfjob-system`. Files are applied in name
  order: the namespace, the CRDs, then the operator.
"""

from __future__ import annotations

import argparse
import difflib
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
CHART = REPOSITORY / "charts" / "tfjob-operator"
POLICY_FILE = CHART / "files" / "node-pool-policy.json"
DEPLOY = REPOSITORY / "deploy"
RELEASE = "tfjob-operator"
NAMESPACE = "tfjob-system"
# Stands for the chart's list of CPU-only pools in the generated policy.
POOLS_PLACEHOLDER = "__CPU_ONLY_POOLS__"

HEADER = (
    "# Generated from charts/tfjob-operator by `make manifests` (python charts/generate.py).\n"
    "# Do not edit: change the chart and regenerate. Apply with `kubectl apply -f deploy/`.\n"
)

NAMESPACE_MANIFEST = f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    app.kubernetes.io/part-of: tfjob-operator
    # The operator's pod meets the restricted Pod Security profile: let the API server hold it to it.
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/warn: restricted
"""


def find_helm() -> str:
    """The helm binary the local cluster builds, else the one on PATH."""
    try:
        from tfjob_localcluster import binaries

        helm = binaries.binary("helm")
        if helm.exists():
            return str(helm)
    except ImportError:
        pass
    found = shutil.which("helm")
    if found is None:
        raise SystemExit("helm not found: run `make binaries` or put helm on PATH")
    return found


def node_pool_policy_file() -> str:
    from tfjob_operator.core.admission import node_pool_policy
    from tfjob_operator.settings import OperatorSettings

    settings = OperatorSettings.model_validate({"node_pools": {POOLS_PLACEHOLDER: {"gpu": False}}})
    generated = node_pool_policy(settings)
    assert generated is not None
    policy, binding = generated
    document = {
        "_generated": "by charts/generate.py from operator/tfjob_operator/core/admission.py; do not edit",
        "placeholder": json.dumps([POOLS_PLACEHOLDER]),
        "policy": {"spec": policy["spec"]},
        "binding": {"spec": binding["spec"]},
    }
    return json.dumps(document, indent=2) + "\n"


def render_deploy(helm: str | None = None) -> dict[str, str]:
    """File name -> content of every file of deploy/."""
    crds = "---\n".join(path.read_text() for path in sorted((CHART / "crds").glob("*.yaml")))
    operator = subprocess.run(
        [helm or find_helm(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        "00-namespace.yaml": HEADER + NAMESPACE_MANIFEST,
        "01-crds.yaml": HEADER + crds,
        "02-tfjob-operator.yaml": HEADER + operator.removeprefix("---\n"),
    }


def _report(path: Path, new: str) -> bool:
    """Print a diff when ``path`` differs from ``new``; True when it does."""
    old = path.read_text() if path.exists() else ""
    if old == new:
        return False
    relative = path.relative_to(REPOSITORY) if path.is_relative_to(REPOSITORY) else path
    sys.stdout.writelines(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            f"{relative} (committed)",
            f"{relative} (generated)",
        )
    )
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    parser.add_argument("--helm", default=None, help="helm binary (default: the local build)")
    args = parser.parse_args(argv)
    policy = node_pool_policy_file()
    if args.check:
        stale = _report(POLICY_FILE, policy)
        files = render_deploy(args.helm)
        present = {p.name for p in DEPLOY.glob("*.yaml")} if DEPLOY.is_dir() else set()
        for name in sorted(present | set(files)):
            stale |= _report(DEPLOY / name, files.get(name, ""))
        if stale:
            print("stale generated files: run `make manifests` (python charts/generate.py)")
            return 1
        return 0
    POLICY_FILE.parent.mkdir(exist_ok=True)
    POLICY_FILE.write_text(policy)
    print(f"wrote {POLICY_FILE.relative_to(REPOSITORY)}")
    files = render_deploy(args.helm)
    DEPLOY.mkdir(exist_ok=True)
    for path in DEPLOY.glob("*.yaml"):
        if path.name not in files:
            path.unlink()
    for name, text in files.items():
        (DEPLOY / name).write_text(text)
        print(f"wrote deploy/{name} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
