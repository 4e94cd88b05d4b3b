# Development entry points for the gaudi.vllm_lmcache collection.
# `make test` runs everything CI runs; `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
SCENARIO ?=
VENV_BIN := .venv/bin
# The tested ansible-core range, declared here only: the oldest supported release (it must
# match meta/runtime.yml's requires_ansible and the roles' min_ansible_version, make lint
# checks) and the newest that Python 3.11 runs (requirements-dev.txt's pin, checked too).
# make sanity and make unit run on both (.venv and .venv-oldest).
ANSIBLE_CORE_OLDEST := 2.16.19
ANSIBLE_CORE_NEWEST := 2.19.14
export ANSIBLE_CORE_OLDEST ANSIBLE_CORE_NEWEST

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F ':.*## ' '{printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}'

.PHONY: venv
venv: ## Create or update the control-node virtualenv (.venv) from requirements-dev.txt
	@bash scripts/venv.sh

.PHONY: docker
docker: ## Install (if missing) and start the Docker engine with no bridge network
	@bash scripts/docker.sh

.PHONY: host-deps
host-deps: ## Install the host packages the tests need (mmdebstrap, qemu, gnupg, dpkg-dev, ssh, promtool, shellcheck)
	@bash scripts/host-deps.sh

.PHONY: image
image: docker host-deps ## Build (once) and cache the Debian 12 systemd base image for Molecule
	@bash scripts/image.sh

.PHONY: vm-image
vm-image: host-deps ## Build (once) and cache the Debian VM image of the kv_storage_vm scenario
	@bash scripts/vm-image.sh

.PHONY: lmcache-wheels
lmcache-wheels: venv ## Fetch (once) into the cache the real LMCache releases that the HPU-patch unit tests use
	@source scripts/lib.sh && activate_venv && python -c 'import sys; sys.path.insert(0, "tests/unit/plugins/module_utils"); \
	  import lmcache_wheels as w; [w.source_dir(v) for v in w.ALL_RELEASES]; \
	  print("%d LMCache releases cached in %s" % (len(w.ALL_RELEASES), w.cache_root()))'

.PHONY: venv-oldest
venv-oldest: ## Create or update .venv-oldest (oldest tested ansible-core) from requirements-oldest.txt
	@bash scripts/venv.sh oldest

.PHONY: lint
lint: venv ## ansible-lint (production), yamllint, shellcheck, ruff check + format --check, the ansible-core range
	@bash scripts/lint.sh

.PHONY: sanity
sanity: sanity-newest sanity-oldest ## ansible-test sanity on both ends of the ansible-core range

.PHONY: sanity-newest
sanity-newest: venv ## ansible-test sanity --local with the newest tested ansible-core (.venv)
	@source scripts/lib.sh && header "ansible-test sanity (ansible-core $(ANSIBLE_CORE_NEWEST))" && bash scripts/sanity.sh

.PHONY: sanity-oldest
sanity-oldest: venv-oldest ## ansible-test sanity --local with the oldest tested ansible-core (.venv-oldest)
	@source scripts/lib.sh && header "ansible-test sanity (ansible-core $(ANSIBLE_CORE_OLDEST))" && GVL_VENV="$$VENV_OLDEST" bash scripts/sanity.sh

.PHONY: unit
unit: unit-newest unit-oldest ## pytest tests/unit on both ends of the ansible-core range

.PHONY: unit-newest
unit-newest: venv host-deps ## pytest tests/unit with the newest tested ansible-core (.venv)
	@source scripts/lib.sh && activate_venv && header "pytest tests/unit (ansible-core $(ANSIBLE_CORE_NEWEST))" && python -m pytest tests/unit

.PHONY: unit-oldest
# The tests that do not exercise ansible-core (marker no_ansible_core, tests/unit/conftest.py)
# run once, in the newest pass.
unit-oldest: venv-oldest host-deps ## pytest tests/unit with the oldest tested ansible-core (.venv-oldest), the tests that exercise ansible-core
	@source scripts/lib.sh && VENV="$$VENV_OLDEST" && activate_venv && header "pytest tests/unit (ansible-core $(ANSIBLE_CORE_OLDEST))" && python -m pytest tests/unit --ansible-core-only

.PHONY: molecule
molecule: venv image ## Molecule scenarios: all, or one with SCENARIO=name
	@bash scripts/molecule.sh $(SCENARIO)

.PHONY: lab
lab: venv image ## Local lab: 4 containers (2 stand-in Gaudi nodes, 2 real CPU serving nodes), site.yml, validation summary
	@bash scripts/lab.sh up

.PHONY: lab-rolling
lab-rolling: venv ## On a converged lab: roll a config change one node at a time (and back) under a request loop, judged by scripts/rolling-check.py
	@bash scripts/lab.sh rolling

.PHONY: lab-down
lab-down: ## Remove the lab containers and the lab state
	@bash scripts/lab.sh down

.PHONY: build
build: venv ## Build the collection tarball and install it offline into a temp path
	@source scripts/lib.sh && header "ansible-galaxy collection build/install" && bash scripts/build.sh

.PHONY: test
test: ## Everything: lint, sanity and unit (both ansible-core ends), build, Molecule; wall time per stage
	@bash scripts/test.sh

.PHONY: clean
clean: ## Remove build outputs (keeps the venv and caches)
	rm -rf tests/output gaudi-vllm_lmcache-*.tar.gz .pytest_cache
