"""An MPI job's SSH key pair, generated where randomness belongs: in the shell, which hands the
public and private key to the pure Secret builder."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def generate_ssh_keypair() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair in OpenSSH formats: (private key, public key line)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public + b" tfjob-operator\n"
