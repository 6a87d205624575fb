"""Tests of the SDK and `kubectl tfjob`, without a cluster."""
