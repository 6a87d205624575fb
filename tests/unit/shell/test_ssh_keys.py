"""An MPI job's key pair: OpenSSH formats, matching, one per job."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from tfjob_operator.shell.ssh_keys import generate_ssh_keypair

pytestmark = pytest.mark.timeout(10)


def test_generated_key_pair_is_openssh_and_matches() -> None:
    private, public = generate_ssh_keypair()
    key = load_ssh_private_key(private, password=None)
    assert public.startswith(b"ssh-ed25519 ")
    assert load_ssh_public_key(public.split(b" tfjob")[0]).public_bytes_raw() == (
        key.public_key().public_bytes_raw()
    )
    assert generate_ssh_keypair()[0] != private  # one key pair per job, never shared
