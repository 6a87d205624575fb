"""Development and test tooling: a real local control plane with simulated GPU node pools."""
