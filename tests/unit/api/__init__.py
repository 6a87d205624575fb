"""Tests of the API models and the CRD generated from them."""
