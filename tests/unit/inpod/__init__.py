"""Tests of the programs that run inside the job's pods, run by this machine's Python."""
