# erdma.pd — the two commands of the quick start, and the pieces they are made of.
PY ?= python3
VENV_BIN := .venv/bin
INVENTORY ?= inventories/lab
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: lab test venv lab-up lab-down lab-status site demo images sanity lint units molecule

## lab: set up everything and run the main job (site.yml) on the local podman lab
lab: lab-up venv site demo

## test: run every quality gate (units, lints, ansible-test, galaxy, molecule)
test:
	$(PY) tests/run.py

venv:
	$(PY) tests/run.py bootstrap

lab-up:
	$(PY) lab/lab.py up

lab-down:
	$(PY) lab/lab.py down

lab-status:
	$(PY) lab/lab.py status

images:
	$(PY) lab/lab.py images

site:
	@start=$$(date +%s); $(VENV_BIN)/ansible-playbook site.yml -i $(INVENTORY); rc=$$?; \
	  echo "site.yml on $(INVENTORY): $$(( $$(date +%s) - start ))s"; exit $$rc

demo:
	@if [ -x lab/demo.py ]; then $(VENV_BIN)/python lab/demo.py --inventory $(INVENTORY); fi

units:
	$(PY) tests/run.py units

lint:
	$(PY) tests/run.py yamllint lint

sanity:
	$(PY) tests/run.py ansible-test

molecule:
	ERDMA_PD_SCENARIOS=$(SCENARIO) $(PY) tests/run.py molecule
