"""Install a job's pipPackages into a layer over the image's Python (run inside the pod).

    python -c "<this file>" LAYER TERMINATION_LOG REQUIREMENT...

Standalone, standard library only: the init container runs this text with the trainer image's
own Python, which knows nothing of the operator. It makes LAYER a virtual environment whose
`.pth` file adds the image's site-packages after its own, then runs pip there: what the image
has counts as installed, and the image's environment is never changed (pip does not uninstall
outside the environment it runs in). The index comes from TFJOB_PIP_INDEX_URL, credentials from
TFJOB_PIP_USERNAME / TFJOB_PIP_PASSWORD (pip redacts them in what it prints). On failure pip's
last lines, and whether the index refused the credentials, go to TERMINATION_LOG, which the
job's status shows.
"""

from __future__ import annotations

import base64
import os
import site
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import venv

KEPT_LINES = 12
MAX_MESSAGE = 3500  # the kubelet keeps 4096 bytes of a termination message


def make_layer(layer: str) -> str:
    """The layer's interpreter, seeing the image's packages after its own."""
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(layer)
    python = os.path.join(layer, "bin", "python")
    own = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with open(os.path.join(own, "_tfjob_image.pth"), "w") as pth:
        for path in site.getsitepackages():
            pth.write(f"import site; site.addsitedir({path!r})\n")
    return python


def index_url(url: str, user: str | None, password: str | None) -> str:
    """The URL pip is given: with the credentials, quoted, when there are any."""
    if user is None and password is None:
        return url
    parts = urllib.parse.urlsplit(url)
    quoted = (
        urllib.parse.quote(user or "", safe="") + ":" + urllib.parse.quote(password or "", safe="")
    )
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{quoted}@{parts.netloc}"))


def refusal(url: str, user: str | None, password: str | None) -> str | None:
    """Whether the index turns these credentials away (pip only says it found nothing)."""
    request = urllib.request.Request(url.rstrip("/") + "/")  # noqa: S310 (http(s) by the CRD)
    if user is not None or password is not None:
        token = base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 (the job's own index)
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            said = "refused the credentials" if user or password else "needs credentials"
            return f"the index {url} {said} (HTTP {error.code})"
    except Exception:  # noqa: BLE001 (unreachable here says nothing pip did not)
        return None
    return None


def main(argv: list[str]) -> int:
    layer, termination_log, *requirements = argv
    python = make_layer(layer)
    env = dict(os.environ)
    url = env.pop("TFJOB_PIP_INDEX_URL", "")
    user = env.pop("TFJOB_PIP_USERNAME", None)
    password = env.pop("TFJOB_PIP_PASSWORD", None)
    if url:
        env["PIP_INDEX_URL"] = index_url(url, user, password)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "http":  # plain HTTP only inside the cluster: trusted as written
            host = parts.hostname or ""
            env["PIP_TRUSTED_HOST"] = f"{host}:{parts.port}" if parts.port else host
    print("tfjob: pip install", *requirements, "from", url or "the default index", flush=True)
    command = [python, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check"]
    command += ["--no-input", "--progress-bar", "off", *requirements]
    run = subprocess.run(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    sys.stdout.write(run.stdout)
    if run.returncode == 0:
        return 0
    tail = run.stdout.strip().splitlines()[-KEPT_LINES:]
    refused = refusal(url, user, password) if url else None
    if refused:
        print(refused, flush=True)
        tail.append(refused)
    if os.path.exists(termination_log):  # the kubelet makes it; the status reads it
        with open(termination_log, "w") as log:
            log.write(("pip install failed:\n" + "\n".join(tail))[-MAX_MESSAGE:])
    return run.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
