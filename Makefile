# estafeta.postfix: one entry point for development, tests and the demo.
#
#   make demo    converge a complete mail server into a local Debian container and prove it works
#   make test    lint + sanity + unit + molecule (installs everything it needs on a fresh machine)
#   make bench   benchmark suite (about 30 min): writes docs/performance.md and docs/performance.json
#   make package        tests of the built collection: installed from its tarball, in an execution environment
#   make fresh-machine  the set-up of a fresh machine (host packages, Docker engine), in a throwaway container
#   make stress  load test: 20 sessions x 500 messages through each converged server (Molecule scenario stress)
#
# Everything installs itself: the Python virtualenv (.venv), a Docker engine and the local
# Debian images (scripts/container-engine.sh), the Postfix binaries the unit tests run.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
STAGE := $(ROOT)/scripts/stage.sh
export ANSIBLE_COLLECTIONS_PATH := $(ROOT)/.cache/collections:$(VENV)/lib/python3.11/site-packages
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export PATH := $(BIN):$(PATH)
export ESTAFETA_STAGE_LOG ?= $(ROOT)/.cache/stages.$(shell date +%s%N)
# Scenarios to run (default: all); e.g. make molecule SCENARIOS="base tls"
SCENARIOS ?=
# Scenarios run in parallel by `make molecule`: three on two cores (a scenario spends much of its time
# waiting on its containers: apt, systemd, mail in flight)
MOLECULE_JOBS ?= 3

.PHONY: help test stress demo demo-clean venv host-deps images lint sanity unit molecule build package fresh-machine docs bench clean bench-modules

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

test:
	@$(STAGE) venv $(MAKE) --no-print-directory venv
	@$(STAGE) host-deps $(MAKE) --no-print-directory host-deps
	@$(STAGE) images $(MAKE) --no-print-directory images
	@$(STAGE) lint $(MAKE) --no-print-directory lint
	@$(STAGE) build $(MAKE) --no-print-directory build
	@$(STAGE) package+fresh-machine $(MAKE) --no-print-directory -j2 --output-sync=target package fresh-machine
	@$(STAGE) sanity $(MAKE) --no-print-directory sanity
	@$(STAGE) unit $(MAKE) --no-print-directory unit
	@$(STAGE) molecule $(MAKE) --no-print-directory molecule
	@$(STAGE) --summary

stress:
	@$(STAGE) venv $(MAKE) --no-print-directory venv
	@$(STAGE) host-deps $(MAKE) --no-print-directory host-deps HOST_DEPS=containers
	@$(STAGE) images $(MAKE) --no-print-directory images
	@$(STAGE) stress bash -c 'cd $(ROOT) && $(BIN)/molecule test -s stress'
	@$(STAGE) --summary

demo:
	@$(STAGE) venv $(MAKE) --no-print-directory venv
	@$(STAGE) host-deps $(MAKE) --no-print-directory host-deps HOST_DEPS=containers
	@$(STAGE) images $(MAKE) --no-print-directory images
	@$(STAGE) demo $(BIN)/ansible-playbook -i $(ROOT)/playbooks/inventories/demo/hosts.yml $(ROOT)/playbooks/demo.yml
	@$(STAGE) --summary

demo-clean:
	$(BIN)/ansible-playbook -i $(ROOT)/playbooks/inventories/demo/hosts.yml $(ROOT)/playbooks/demo.yml --tags demo_destroy --limit localhost

venv: $(VENV)/.installed $(ROOT)/.cache/collections/ansible_collections/estafeta/postfix

$(VENV)/.installed: $(ROOT)/tests/requirements.txt
	@command -v python3 >/dev/null || { echo "python3 is missing: apt-get install python3 python3-venv"; exit 1; }
	@python3 -m venv --help >/dev/null 2>&1 || { echo "python3 venv support is missing: apt-get install python3-venv"; exit 1; }
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r $(ROOT)/tests/requirements.txt
	touch $@

$(ROOT)/.cache/collections/ansible_collections/estafeta/postfix:
	mkdir -p $(dir $@)
	ln -sfn ../../../.. $@

# Debian packages on this machine, in one apt transaction before any parallel step:
# all (make test) = containers (docker.io, debootstrap) + unit (the Postfix binaries).
HOST_DEPS ?= all
host-deps:
	@$(ROOT)/scripts/host-deps.sh $(HOST_DEPS)

images:
	@$(ROOT)/scripts/container-engine.sh images

lint: venv
	cd $(ROOT) && $(BIN)/ansible-lint --profile production
	cd $(ROOT) && $(BIN)/python tests/check_docs.py
	$(BIN)/antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs --validate-collection-refs self \
		$(ROOT)/.cache/collections/ansible_collections/estafeta/postfix

sanity: venv
	$(ROOT)/scripts/sanity.sh

unit: venv
	cd $(ROOT) && $(BIN)/python -m pytest tests/unit -q -p no:cacheprovider -n 2

# Every scenario but stress (the long load test, run by `make stress`), the longest first (drift and
# security, then the others), so that the longest does not start last.
LONGEST_SCENARIOS = drift security
ALL_SCENARIOS = $(LONGEST_SCENARIOS) $(filter-out stress $(LONGEST_SCENARIOS),$(notdir $(patsubst %/molecule.yml,%,$(wildcard $(ROOT)/molecule/*/molecule.yml))))

molecule: venv
	cd $(ROOT) && $(ROOT)/scripts/molecule-all.sh $(MOLECULE_JOBS) $(or $(SCENARIOS),$(ALL_SCENARIOS))

build: venv
	rm -rf $(ROOT)/build && mkdir -p $(ROOT)/build
	cd $(ROOT) && $(BIN)/ansible-galaxy collection build --force --output-path build >/dev/null
	cd $(ROOT) && $(BIN)/python tests/check_build.py build/estafeta-postfix-*.tar.gz

# The built tarball as a user gets it: installed into an empty collections path (dependencies
# resolved from its MANIFEST.json, the tls role run in a Debian 12 container), and in the build
# context of the execution environment (ee/). Needs `make build` and `make images` first.
package: venv
	cd $(ROOT) && $(BIN)/python -m pytest tests/package -q -p no:cacheprovider -n 2

# The set-up a fresh machine goes through (host packages in one apt transaction, a stale dockerd
# pid file, dockerd started, CI's scripts/fresh-host.sh), run for real in a throwaway Debian 12
# container: this machine's packages and engine are not touched. Needs `make images` first.
fresh-machine: venv
	cd $(ROOT) && $(BIN)/python -m pytest tests/harness -q -p no:cacheprovider

clean:
	rm -rf $(ROOT)/build $(ROOT)/tests/output $(ROOT)/.cache/sanity

# Benchmarks, not part of `make test`. BENCH_ARGS e.g. "--only modules,fleet --fleet 1,4" or "--only mitogen --merge".
# bench/requirements.txt (Mitogen, matplotlib) goes into the venv for the benchmarks only.
BENCH_ARGS ?=
bench: venv host-deps images
	$(BIN)/python -m pip install -q -r $(ROOT)/bench/requirements.txt
	cd $(ROOT) && $(BIN)/python bench/bench.py $(BENCH_ARGS)

bench-modules: venv
	@$(ROOT)/scripts/host-deps.sh unit
	cd $(ROOT) && $(BIN)/python bench/module_bench.py

# The plugin and role reference (docs/reference/), generated by antsibull-docs; tests/unit/test_docs_current.py
# fails when it is not current.
docs: venv
	cd $(ROOT) && $(BIN)/python tests/docs_reference.py
