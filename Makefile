# tracemesh: `make demo` runs Bookinfo locally with tracing; `make test` runs the tests.
# Both create and fill their own virtual environment in .venv (needs only Python 3.11+).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
COMPILED := $(VENV)/.compiled

.PHONY: venv demo test test-pure lint bench clean

venv: $(COMPILED)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	TRACEMESH_MYPYC=0 $(BIN)/pip install --quiet -e '.[test,lint]'
	rm -f $(COMPILED)  # that install built pure Python: compile again where the compiled build is wanted
	touch $(STAMP)

# The sidecar's request path and the collector's store compiled by mypyc (setup.py), from the sources as they
# are now: without build isolation, so that the type check sees the dependencies and stubs installed above.
# Where there is no C compiler it stays pure Python (TRACEMESH_MYPYC=1 makes that an error, as in CI).
# With gcc's profile-guided optimization (setup.py's TRACEMESH_PGO): an instrumented build, the training load
# (bench/pgo_training.py, ~1 minute), then the build its counts optimize. `make venv PGO=0`: one plain build.
PGO ?= 1
$(COMPILED): $(STAMP) setup.py bench/pgo_training.py $(shell find sidecar/tracemesh_sidecar collector/tracemesh_collector -name '*.py')
ifeq ($(PGO),1)
	TRACEMESH_PGO=generate $(BIN)/pip install --quiet --no-build-isolation --no-deps -e .
	$(BIN)/python -m bench.pgo_training
	TRACEMESH_PGO=use $(BIN)/pip install --quiet --no-build-isolation --no-deps -e .
else
	$(BIN)/pip install --quiet --no-build-isolation --no-deps -e .
endif
	$(BIN)/python -c 'import tracemesh_sidecar; print("tracemesh sidecar:", tracemesh_sidecar.BUILD.describe())'
	touch $(COMPILED)

demo: $(COMPILED)
	$(BIN)/tracemesh demo

# The suite on the build `make venv` made (compiled where it could), and on pure Python: CI runs both.
test: $(COMPILED)
	$(BIN)/pytest

test-pure: $(COMPILED)
	TRACEMESH_PURE_PYTHON=1 $(BIN)/pytest

# lint-imports: the layering README.md claims, as .importlinter's contracts (--no-cache: no cache directory
# left in the checkout; building the import graph takes well under a second).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo

# A second interpreter for the proxy pair, same run: Debian's python3.11 where there is one (bench/interpreter.py).
SECOND_PYTHON ?= $(wildcard /usr/bin/python3.11)
bench: $(COMPILED)
	BENCH_SECOND_PYTHON=$(SECOND_PYTHON) $(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# --- Kubernetes end-to-end on kind (needs docker, kind, kubectl) -------------------------------
# make kind-e2e does it all: kind-up images kind-load deploy bookinfo e2e-kind; make kind-down when done.
# kind is pinned (`make kind-install` puts $(KIND_VERSION) in /usr/local/bin), and so is its node
# image, by the digest kind $(KIND_VERSION) itself defaults to (kind: pkg/apis/config/defaults/image.go
# at the v0.32.0 release commit cda67ef8).
KIND          ?= kind
KIND_VERSION  ?= v0.32.0
KIND_NODE_IMAGE ?= kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5
KUBECTL   ?= kubectl
DOCKER    ?= docker
CLUSTER   ?= tracemesh
VERSION   ?= 0.1.0
# Full names, as the manifests ask for them: a podman user's `kind load` then matches too.
IMAGE_REPO ?= docker.io/tracemesh
BOOKINFO  := productpage details reviews ratings
ALL_IMAGES := $(IMAGE_REPO)/operator:$(VERSION) $(IMAGE_REPO)/proxy:$(VERSION) \
              $(foreach s,$(BOOKINFO),$(IMAGE_REPO)/bookinfo-$(s):$(VERSION))
# One archive for `kind load image-archive`: `kind load docker-image` fails on Docker 29's
# containerd image store, an archive loads from any Docker (or podman) store.
IMAGES_ARCHIVE ?= .tracemesh/images-$(VERSION).tar
# VERSION end to end: every docker.io/tracemesh/* reference in what is applied (the operator's
# image, the image its webhook injects, Bookinfo's) becomes $(IMAGE_REPO)/*:$(VERSION).
RETAG := sed -e 's|docker.io/tracemesh/\([a-z-]*\):[0-9A-Za-z._-]*|$(IMAGE_REPO)/\1:$(VERSION)|g'
WEBHOOK_CONFIGURATION := mutatingwebhookconfiguration/tracemesh-sidecar-injector
# The ingress gateway Service's http2 node port, which kind/cluster.yaml maps to localhost:8080 ($GATEWAY_URL).
GATEWAY_NODE_PORT ?= 30080

.PHONY: kind-e2e kind-install kind-up images kind-load deploy bookinfo e2e-kind kind-down images-smoke

# Everything, in order, from a machine with Docker and kind: the one target to run.
kind-e2e: kind-up images kind-load deploy bookinfo e2e-kind

kind-install:
	curl -fsSLo /tmp/kind-$(KIND_VERSION) https://kind.sigs.k8s.io/dl/$(KIND_VERSION)/kind-linux-amd64
	sudo install -m 0755 /tmp/kind-$(KIND_VERSION) /usr/local/bin/kind

# Idempotent: an existing cluster of that name is kept.
kind-up:
	@$(KIND) version | grep -q '^kind $(KIND_VERSION) ' || { echo "kind $(KIND_VERSION) is required, found: $$($(KIND) version)"; echo "run: make kind-install"; exit 1; }
	if $(KIND) get clusters | grep -qx '$(CLUSTER)'; then echo "kind cluster $(CLUSTER) exists: kept"; \
	else $(KIND) create cluster --name $(CLUSTER) --image $(KIND_NODE_IMAGE) --config kind/cluster.yaml --wait 180s; fi

images:
	$(DOCKER) build -f images/operator/Dockerfile -t $(IMAGE_REPO)/operator:$(VERSION) .
	$(DOCKER) build -f images/proxy/Dockerfile -t $(IMAGE_REPO)/proxy:$(VERSION) .
	$(foreach s,$(BOOKINFO),$(DOCKER) build -f samples/bookinfo/Dockerfile --build-arg SERVICE=$(s) -t $(IMAGE_REPO)/bookinfo-$(s):$(VERSION) . &&) true

kind-load:
	mkdir -p $(dir $(IMAGES_ARCHIVE))
	$(DOCKER) image save -o $(IMAGES_ARCHIVE) $(ALL_IMAGES)
	$(KIND) load image-archive --name $(CLUSTER) $(IMAGES_ARCHIVE)

# The CRDs first and established, so that the MeshConfig in the kustomization maps on the first apply.
# Bookinfo waits for the webhook's caBundle: the operator writes it once it runs, and until then
# every pod creation in a labelled namespace is refused (failurePolicy: Fail).
deploy:
	$(KUBECTL) apply -f manifests/crds/
	$(KUBECTL) apply --server-side -k manifests/gateway-api/
	$(KUBECTL) wait --for condition=established --timeout=60s crd/telemetries.telemetry.istio.io crd/meshconfigs.tracemesh.io \
	  crd/gateways.networking.istio.io crd/virtualservices.networking.istio.io crd/destinationrules.networking.istio.io \
	  crd/gateways.gateway.networking.k8s.io crd/httproutes.gateway.networking.k8s.io
	$(KUBECTL) kustomize manifests/ | $(RETAG) | $(KUBECTL) apply -f -
	$(KUBECTL) apply -f manifests/addons/zipkin.yaml -f manifests/addons/jaeger.yaml -f manifests/addons/meshconfig-providers.yaml
	$(KUBECTL) -n istio-system rollout status deployment/tracemesh-operator --timeout=180s
	for i in $$(seq 90); do \
	  bundles=$$($(KUBECTL) get $(WEBHOOK_CONFIGURATION) -o jsonpath='{range .webhooks[*]}{.clientConfig.caBundle}{" "}{end}'); \
	  [ $$(echo $$bundles | wc -w) -eq 2 ] && { echo "webhook caBundle set"; break; }; \
	  [ $$i -eq 90 ] && { echo "the operator has not written the webhook's caBundle after 180s"; exit 1; }; sleep 2; done
	$(KUBECTL) -n istio-system patch service istio-ingressgateway -p '{"spec":{"ports":[{"port":80,"nodePort":$(GATEWAY_NODE_PORT)}]}}'
	$(KUBECTL) -n istio-system rollout status deployment/istio-ingressgateway --timeout=180s
	$(KUBECTL) -n istio-system rollout status deployment/zipkin --timeout=300s
	$(KUBECTL) -n istio-system rollout status deployment/jaeger --timeout=300s

bookinfo:
	$(KUBECTL) label namespace default istio-injection=enabled --overwrite
	$(KUBECTL) apply -f samples/bookinfo/telemetry.yaml
	$(RETAG) samples/bookinfo/platform/kube/bookinfo.yaml | $(KUBECTL) apply -f -
	$(KUBECTL) apply -f samples/bookinfo/networking/bookinfo-gateway.yaml
	$(KUBECTL) wait --for condition=available --timeout=300s deployment --all -n default

e2e-kind: $(STAMP)
	$(BIN)/pytest -m kind tests/kind

kind-down:
	$(KIND) delete cluster --name $(CLUSTER)

# Every image built with buildah (from a debootstrapped stand-in for the Dockerfiles' base) and run
# with podman under its manifest's security context (images/tracemesh_images/smoke.py). Root only.
images-smoke: $(STAMP)
	PYTHONPATH=images $(BIN)/python -m tracemesh_images.smoke --version $(VERSION) --image-repo $(IMAGE_REPO)
