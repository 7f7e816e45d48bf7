# Thin wrappers. `make lab` brings the lab up and runs site.yml; `make test` runs every test.
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PLAYBOOKS := site.yml $(wildcard playbooks/*.yml)

.PHONY: venv lab site deploy rollback lab-engine lint syntax test destroy purge-backups clean bench redeploy-test

# Re-running does nothing unless requirements changed.
$(STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

venv: $(STAMP)

## The main job: create (or start) the lab, then converge it with site.yml.
lab: venv
	ansible-playbook playbooks/lab.yml
	ansible-playbook site.yml

site: venv
	ansible-playbook site.yml

## Rolling deploy of the app as it is in app/ (build, stage, migrate once, host by host).
deploy: venv
	ansible-playbook playbooks/deploy.yml

## Back to the release before the current one, with the same rolling mechanics.
rollback: venv
	ansible-playbook playbooks/deploy.yml -e deploy_rollback=true

## Docker engine, apt cache and base image only (what the molecule scenarios need).
lab-engine: venv
	ansible-playbook playbooks/lab.yml --tags secrets,engine,image -e '{"lab_extra_suites": ["bookworm"]}'

lint: venv
	yamllint --strict .
	ansible-lint --profile production

syntax: venv
	for p in $(PLAYBOOKS); do ansible-playbook --syntax-check $$p || exit 1; done

## Every test: lint, syntax, controller-side tests, every molecule scenario. The Docker
## engine and the lab's base image come up while the linters run.
test: venv
	$(MAKE) --no-print-directory --output-sync=target -j3 lint syntax lab-engine
	pytest tests

## Remove every lab host. The backup repository's storage is kept: `make lab` restores from it.
destroy: venv
	ansible-playbook playbooks/lab.yml -e lab_state=absent

## Remove every lab host AND the kept backup repository: every backup is lost.
purge-backups: venv
	ansible-playbook playbooks/lab.yml -e lab_state=absent -e lab_purge_kept_storage=true

## Everything the lab made: hosts, backups, keys, the vault password (the lab vault is then unreadable).
clean: purge-backups
	rm -rf .lab $(VENV) inventories/lab/group_vars/all/vault.yml

## Write data, destroy every host, `make lab` again, compare: on a stack lab of its own
## (tests/z_stack: STACK_LAB_NAME, STACK_LAB_NET), removed afterwards.
redeploy-test: venv lab-engine
	pytest tests/z_stack/test_redeploy.py

bench: venv
	bench/converge.sh
