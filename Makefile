# tracemesh: `make demo` runs Bookinfo locally with tracing; `make test` runs the tests.
# Both create and fill their own virtual environment in .venv (needs only Python 3.11+).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-fast lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tracemesh demo

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# --- Kubernetes end-to-end on kind (needs docker, kind, kubectl) -------------------------------
# make kind-up images kind-load deploy bookinfo e2e-kind; make kind-down when done.
KIND      ?= kind
KUBECTL   ?= kubectl
DOCKER    ?= docker
CLUSTER   ?= tracemesh
VERSION   ?= 0.1.0
BOOKINFO  := productpage details reviews ratings
ALL_IMAGES := tracemesh/operator:$(VERSION) tracemesh/proxy:$(VERSION) \
              $(foreach s,$(BOOKINFO),tracemesh/bookinfo-$(s):$(VERSION))

.PHONY: kind-e2e kind-up images kind-load deploy bookinfo e2e-kind kind-down

# Everything, in order, from a machine with Docker and kind: the one target to run.
kind-e2e: kind-up images kind-load deploy bookinfo e2e-kind

kind-up:
	$(KIND) create cluster --name $(CLUSTER) --config kind/cluster.yaml --wait 180s

images:
	$(DOCKER) build -f images/operator/Dockerfile -t tracemesh/operator:$(VERSION) .
	$(DOCKER) build -f images/proxy/Dockerfile -t tracemesh/proxy:$(VERSION) .
	$(foreach s,$(BOOKINFO),$(DOCKER) build -f samples/bookinfo/Dockerfile --build-arg SERVICE=$(s) -t tracemesh/bookinfo-$(s):$(VERSION) . &&) true

kind-load:
	$(KIND) load docker-image --name $(CLUSTER) $(ALL_IMAGES)

# The CRDs first and established, so that the MeshConfig in the kustomization maps on the first apply.
deploy:
	$(KUBECTL) apply -f manifests/crds/
	$(KUBECTL) wait --for condition=established --timeout=60s crd/telemetries.telemetry.istio.io crd/meshconfigs.tracemesh.io
	$(KUBECTL) apply -k manifests/
	$(KUBECTL) apply -f manifests/addons/zipkin.yaml -f manifests/addons/jaeger.yaml -f manifests/addons/meshconfig-providers.yaml
	$(KUBECTL) -n istio-system rollout status deployment/tracemesh-operator --timeout=180s
	$(KUBECTL) -n istio-system rollout status deployment/zipkin --timeout=300s
	$(KUBECTL) -n istio-system rollout status deployment/jaeger --timeout=300s

bookinfo:
	$(KUBECTL) label namespace default istio-injection=enabled --overwrite
	$(KUBECTL) apply -f samples/bookinfo/telemetry.yaml
	$(KUBECTL) apply -f samples/bookinfo/platform/kube/bookinfo.yaml
	$(KUBECTL) apply -f samples/bookinfo/networking/productpage-nodeport.yaml
	$(KUBECTL) wait --for condition=available --timeout=300s deployment --all -n default

e2e-kind: $(STAMP)
	$(BIN)/pytest -m kind tests/kind

kind-down:
	$(KIND) delete cluster --name $(CLUSTER)
