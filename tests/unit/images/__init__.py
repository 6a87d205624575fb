"""Tests of the images' Dockerfiles and the training-side helpers they carry."""
