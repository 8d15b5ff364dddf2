# Every target bootstraps what it needs: a fresh clone with Python 3.11+ is enough.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.SUFFIXES:

UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
VENV := .venv
CLI := $(VENV)/bin/inference-service
MODEL_DIR := $(or $(INFERENCE_MODEL_DIR),models/iris)
GIT_SHA := $(shell git rev-parse --short=12 HEAD 2>/dev/null)
IMAGE_NAME ?= inference-service
IMAGE_TAG ?= $(or $(GIT_SHA),latest)
IMAGE ?= $(IMAGE_NAME):$(IMAGE_TAG)
URL ?= http://127.0.0.1:$(or $(INFERENCE_PROXY_PORT),6666)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install -q uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras
	@touch $@

.PHONY: venv
venv: $(VENV)/.synced ## create .venv from uv.lock

$(MODEL_DIR)/current: data/input/train/iris.csv | $(VENV)/.synced
	$(CLI) train --model-dir $(MODEL_DIR)

.PHONY: train
train: $(VENV)/.synced ## train, gate and publish a new model version
	$(CLI) train --model-dir $(MODEL_DIR)

.PHONY: run
run: $(MODEL_DIR)/current ## serve on http://127.0.0.1:6666 (INFERENCE_* settings apply)
	exec $(CLI) serve

.PHONY: lint
lint: $(VENV)/.synced ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: typecheck
typecheck: $(VENV)/.synced ## mypy --strict on src/
	$(VENV)/bin/mypy --strict src

.PHONY: test
test: lint typecheck ## lint, types and the whole pytest suite
	$(VENV)/bin/pytest

.PHONY: smoke
smoke: $(VENV)/.synced ## check a running service end to end (URL=...)
	$(CLI) smoke $(URL)

.PHONY: image
image: $(VENV)/.synced ## build the container image, tagged with the git sha and latest
	scripts/build-image.sh $(IMAGE)

.PHONY: host-install
host-install: $(VENV)/.synced ## make sure Docker, nginx and the proxy config are present (idempotent)
	$(CLI) deploy install

.PHONY: deploy-local
deploy-local: $(VENV)/.synced ## zero-downtime deploy of IMAGE to this Docker host (CANARY=PERCENT: canary first)
	$(CLI) deploy up $(IMAGE)$(if $(CANARY), --canary $(CANARY))

.PHONY: rollback-local
rollback-local: $(VENV)/.synced ## switch back to the previous release
	$(CLI) deploy rollback

.PHONY: pipeline
pipeline: $(VENV)/.synced ## the deploy workflow's stages, run locally
	scripts/pipeline.sh

.PHONY: bench
bench: $(MODEL_DIR)/current ## benchmark against the original design (wrk, ~5 min)
	bench/run.sh

.PHONY: fuzz
fuzz: $(VENV)/.synced ## contract fuzzing against a live server, full size (FUZZ_EXAMPLES=...)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-1500} $(VENV)/bin/pytest -p no:cacheprovider tests/e2e/test_fuzz.py

.PHONY: soak
soak: $(MODEL_DIR)/current ## 60 s at 70 % of peak, then 10 s at 3x peak (wrk), figures to docs/reliability.md
	$(VENV)/bin/python scripts/soak.py

.PHONY: tf-validate
tf-validate: ## terraform init -backend=false and validate (needs the provider registry)
	for dir in infra/terraform infra/terraform/aks infra/terraform/examples/basic; do \
	  terraform -chdir=$$dir init -backend=false -input=false && terraform -chdir=$$dir validate || exit 1; \
	done

.PHONY: clean
clean: ## remove the environment, models and caches
	rm -rf $(VENV) .tools models .mypy_cache .ruff_cache .pytest_cache .hypothesis

# --- Delivery: GitHub Actions workflows and their local twins (docs/delivery.md) ---

WORKFLOWS := $(wildcard .github/workflows/*.yml)

.PHONY: workflow-lint
workflow-lint: $(VENV)/.synced ## actionlint and the GitHub workflow schema on .github/workflows
	$(VENV)/bin/actionlint $(WORKFLOWS)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)

.PHONY: checkov
checkov: $(VENV)/.synced ## checkov on the Dockerfile, the Terraform and the workflows
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

.PHONY: tf-plan
tf-plan: ## terraform init (azurerm state from TFSTATE_*) and plan into TF_DIR/TF_PLAN
	terraform -chdir=$(TF_DIR) init -input=false $(TF_BACKEND)
	terraform -chdir=$(TF_DIR) plan -input=false -out=$(TF_PLAN)

.PHONY: tf-apply
tf-apply: ## terraform init and apply exactly the saved plan TF_DIR/TF_PLAN
	terraform -chdir=$(TF_DIR) init -input=false $(TF_BACKEND)
	terraform -chdir=$(TF_DIR) apply -input=false $(TF_PLAN)

K8S_OVERLAY ?= deploy/k8s/overlays/prod
K8S_NAMESPACE ?= inference-service
ACR_IMAGE = $(ACR_NAME).azurecr.io/$(IMAGE_NAME):$(IMAGE_TAG)

.PHONY: aks-credentials
aks-credentials: ## kubeconfig for AKS_CLUSTER in AKS_RESOURCE_GROUP from the az login (kubelogin)
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

.PHONY: aks-deploy
aks-deploy: ## kubectl apply -k K8S_OVERLAY and wait for the rollout
	kubectl apply -k $(K8S_OVERLAY)
	kubectl -n $(K8S_NAMESPACE) rollout status deployment/inference-service --timeout=5m

.PHONY: aks-rollback
aks-rollback: ## kubectl rollout undo, then wait for the previous revision
	kubectl -n $(K8S_NAMESPACE) rollout undo deployment/inference-service
	kubectl -n $(K8S_NAMESPACE) rollout status deployment/inference-service --timeout=5m
