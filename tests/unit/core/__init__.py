"""Tests of the pure core: table cases, no cluster, milliseconds."""
