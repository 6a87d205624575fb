"""Install a job's pipPackages into a layer over the image's Python (run inside the pod).

    python -c "<this file>" LAYER TERMINATION_LOG REQUIREMENT...

Standalone, standard library only: the init container runs this text with the trainer image's
own Python, which knows nothing of the operator. It makes LAYER a virtual environment whose
`.pth` file adds the image's site-packages after its own, then runs pip there: what the image
has counts as installed, and the image's environment is never changed (pip does not uninstall
outside the environment it runs in). The index comes from TFJOB_PIP_INDEX_URL, credentials from
TFJOB_PIP_USERNAME / TFJOB_PIP_PASSWORD. They reach pip in a netrc file for the index's host
alone (NETRC), never in its URL: pip passes the index URL on the command line of the pip it
runs to install a package's build requirements, where any process of the pod could read it. The
file is removed when pip ends, before the trainer (which mounts LAYER) starts. On failure pip's
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


def netrc_entry(url: str, user: str | None, password: str | None) -> str:
    """A netrc line that gives the credentials to the index's host, and to no other."""

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    host = urllib.parse.urlsplit(url).hostname or ""
    return f"machine {host} login {quoted(user or '')} password {quoted(password or '')}\n"


def shown(url: str) -> str:
    """The URL as it may be printed: any user:password@ part taken out (the CRD refuses one; a
    job stored before it did may have it)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The probe goes to the index alone: a redirect (to a CDN, to http) would carry the
    Authorization header wherever it points."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def refusal(url: str, user: str | None, password: str | None) -> str | None:
    """Whether the index turns these credentials away (pip only says it found nothing)."""
    request = urllib.request.Request(url.rstrip("/") + "/")  # noqa: S310 (http(s) by the CRD)
    if user is not None or password is not None:
        token = base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(request, timeout=10).close()
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            said = "refused the credentials" if user or password else "needs credentials"
            return f"the index {shown(url)} {said} (HTTP {error.code})"
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
    netrc = os.path.join(layer, ".tfjob-netrc")
    if url:
        env["PIP_INDEX_URL"] = url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "http":  # plain HTTP only inside the cluster: trusted as written
            host = parts.hostname or ""
            env["PIP_TRUSTED_HOST"] = f"{host}:{parts.port}" if parts.port else host
        if user is not None or password is not None:
            descriptor = os.open(netrc, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(netrc_entry(url, user, password))
            env["NETRC"] = netrc
    print(
        "tfjob: pip install", *requirements, "from", shown(url) or "the default index", flush=True
    )
    command = [python, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check"]
    command += ["--no-input", "--progress-bar", "off", *requirements]
    try:
        run = subprocess.run(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
    finally:
        if os.path.exists(netrc):
            os.remove(netrc)
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
