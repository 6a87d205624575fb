"""Tests of the shell's parts against recording fakes of the API server (integration/ has
the real one)."""
