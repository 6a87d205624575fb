# Entry points a person and CI share. Everything slow is cached outside the repository:
# Python packages in .venv (ignored by git), Go binaries in ~/.cache/tfjob-operator/bin.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: up down status test unit lint binaries packages manifests bench bench-scale bench-history faults images

$(VENV)/.installed: pyproject.toml tools/localcluster/pyproject.toml tools/bench/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]' -e tools/localcluster -e tools/bench
	touch $@

binaries: $(VENV)/.installed
	$(BIN)/tfjob-local build

## up: build what is missing and start the local cluster: this machine as a real node (root)
## beside simulated GPU node pools, the operator and a sample job; HOROVOD=1 also builds and
## loads the Horovod image
up: binaries
	$(BIN)/tfjob-local up $(if $(HOROVOD),--horovod)

## down: stop the local cluster
down: $(VENV)/.installed
	$(BIN)/tfjob-local down

status: $(VENV)/.installed
	$(BIN)/tfjob-local status

## manifests: regenerate what is derived: crds/ and the chart's copy, the chart's policy, deploy/
manifests: binaries
	$(BIN)/python -m tfjob_operator.api.crd
	$(BIN)/python charts/generate.py

lint: $(VENV)/.installed
	$(BIN)/ruff check operator tools tests images
	$(BIN)/ruff format --check operator tools tests images

unit: $(VENV)/.installed
	$(BIN)/pytest tests/unit

## bench: the benchmark (issue 9) on a fresh local cluster: 200 jobs x 4 pods through a bare
## client (the limit), our operator, Kubeflow's shipped and tuned, in 3 interleaved rounds
## (ROUNDS=n for more); table and plot in bench-results/
ROUNDS ?= 3
bench: $(VENV)/.installed
	$(BIN)/tfjob-bench --rounds $(ROUNDS) --out bench-results

## bench-scale: P3, 5,000 jobs x 5 pods over 500 simulated GPU nodes (the limit and ours);
## one round by default, about 40 minutes here (SCALE_ROUNDS=n for more)
SCALE_ROUNDS ?= 1
bench-scale: $(VENV)/.installed
	$(BIN)/tfjob-bench --scale --rounds $(SCALE_ROUNDS) --out bench-results/scale

## bench-history: 10,000 finished jobs kept (made live, no TTL), the limit and ours measured
## before and after them, and the operator restarted among them
bench-history: $(VENV)/.installed
	$(BIN)/tfjob-bench --history 10000 --rounds $(ROUNDS) --out bench-results/history

## images: build the operator, trainer-cpu and Horovod images from images/*/Dockerfile with
## buildah, no registry (a local Debian base; cached in ~/.cache/tfjob-operator/images)
images: $(VENV)/.installed
	$(BIN)/tfjob-local images

## faults: the fault suite at its documented size: the operator SIGKILLed 10 times over 100
## jobs, the API server and etcd killed, a node lost, two peered replicas killed in turn
faults: $(VENV)/.installed binaries
	TFJOB_FAULT_JOBS=100 TFJOB_FAULT_KILLS=10 $(BIN)/pytest tests/integration/test_faults.py -s

## packages: Debian's packages for the images and the real node (installed as root, else named)
packages: $(VENV)/.installed
	$(BIN)/tfjob-local packages

## test: lint, then every test layer against a real control plane started by the tests (the
## images and Kueue first: building either cold takes longer than a test may)
test: lint binaries packages images
	$(BIN)/tfjob-local build kueue
	$(BIN)/pytest
