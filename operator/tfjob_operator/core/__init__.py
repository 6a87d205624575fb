"""The pure core: a job's spec compiled, its children built, its pass decided and its status
computed. Plain functions of their inputs: no kopf, no kubernetes client, no clock (time is an
argument), no I/O; every module here is unit-tested without a cluster."""
