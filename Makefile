# Development entry points for the gaudi.vllm_lmcache collection.
# `make test` runs everything CI runs; `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
SCENARIO ?=
VENV_BIN := .venv/bin

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F ':.*## ' '{printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}'

.PHONY: venv
venv: ## Create or update the control-node virtualenv (.venv) from requirements-dev.txt
	@bash scripts/venv.sh

.PHONY: docker
docker: ## Install (if missing) and start the Docker engine with no bridge network
	@bash scripts/docker.sh

.PHONY: host-deps
host-deps: ## Install the host packages the tests need (mmdebstrap, qemu, gnupg, dpkg-dev, ssh)
	@bash scripts/host-deps.sh

.PHONY: image
image: docker host-deps ## Build (once) and cache the Debian 12 systemd base image for Molecule
	@bash scripts/image.sh

.PHONY: lint
lint: venv ## ansible-lint (production profile) and yamllint
	@source scripts/lib.sh && activate_venv && header "ansible-lint --profile production" && ansible-lint --profile production
	@source scripts/lib.sh && activate_venv && header "yamllint" && yamllint --strict . && echo "yamllint: 0 problems"

.PHONY: sanity
sanity: venv ## ansible-test sanity --local on an ansible_collections/gaudi/vllm_lmcache copy
	@source scripts/lib.sh && header "ansible-test sanity" && bash scripts/sanity.sh

.PHONY: unit
unit: venv ## pytest on tests/unit
	@source scripts/lib.sh && activate_venv && header "pytest tests/unit" && python -m pytest tests/unit

.PHONY: molecule
molecule: venv image ## Molecule scenarios: all, or one with SCENARIO=name
	@bash scripts/molecule.sh $(SCENARIO)

.PHONY: lab
lab: venv image ## Local lab: 3 containers (2 stand-in Gaudi nodes, 1 prefill node), site.yml, validation summary
	@bash scripts/lab.sh up

.PHONY: lab-down
lab-down: ## Remove the lab containers and the lab state
	@bash scripts/lab.sh down

.PHONY: build
build: venv ## Build the collection tarball and install it offline into a temp path
	@source scripts/lib.sh && header "ansible-galaxy collection build/install" && bash scripts/build.sh

.PHONY: test
test: lint sanity unit build molecule ## Everything: lint, sanity, unit, build, Molecule
	@source scripts/lib.sh && header "make test: all stages passed"

.PHONY: clean
clean: ## Remove build outputs (keeps the venv and caches)
	rm -rf tests/output gaudi-vllm_lmcache-*.tar.gz .pytest_cache
