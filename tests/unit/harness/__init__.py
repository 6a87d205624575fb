"""Tests of the local cluster harness's own parts."""
