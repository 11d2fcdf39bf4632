# hyperlet: `make run` sets the host up and runs the daemon on examples/; `make test` sets up and passes every test.
SHELL := /bin/bash
NODE_STAMP := node_modules/.install-stamp
SOURCES := $(shell find src test bench scripts -name '*.ts' 2>/dev/null)

.PHONY: deps host build lint unit integration e2e test run bench clean crds

# A node_modules that is a symlink belongs to another checkout: never reinstall through it.
$(NODE_STAMP): package.json package-lock.json
	@if [ -L node_modules ]; then echo "node_modules is a symlink: not reinstalling it from here"; else npm ci --no-audit --no-fund && touch $@; fi

## deps: npm packages and the host packages and services (lxc, libvirt)
deps: $(NODE_STAMP) host

## host: install and start what LXC and libvirt need (root on Debian/Ubuntu; idempotent)
host:
	bash scripts/setup-host.sh

dist/.build-stamp: $(NODE_STAMP) $(SOURCES) tsconfig.json
	npx tsc -p tsconfig.json
	@# tsc never deletes: drop output whose source is gone (a test moved to another tier must not run twice).
	@find dist -name '*.js' | while read -r js; do ts="$${js#dist/}"; [ -f "$${ts%.js}.ts" ] || rm -f "$$js" "$$js.map"; done
	touch $@

build: dist/.build-stamp

## lint: eslint, the layer order (scripts/check-layers.ts), a doc comment on every export (scripts/check-docs.ts)
lint: build
	npx eslint --max-warnings 0 src test bench scripts
	node dist/scripts/check-layers.js
	node dist/scripts/check-docs.js

# Three tiers. unit: pure logic, fakes at the provider boundary, FakeClock; no process, watcher,
# git or SQLite file (seconds). integration: real git, chokidar, SQLite files and spawned tools,
# with a FakeProvider. e2e: real lxc-*, libvirtd + QEMU, kube-apiserver + etcd.
UNIT_TESTS := 'dist/test/unit/**/*.test.js'
INTEGRATION_TESTS := 'dist/test/integration/**/*.test.js'
# 2 (default): the kube files and the others in two mocha processes at once (7.0 min to 4.3 min
# for the whole e2e tier here); 1: one file after the other.
E2E_JOBS ?= 2

## unit: the quick inner loop, fakes at the provider boundary only
unit: build
	npx mocha $(UNIT_TESTS)

## integration: real git, chokidar, SQLite files and processes; no hypervisor, no API server
integration: build
	npx mocha --timeout 60000 --exit $(INTEGRATION_TESTS)

## e2e: real lxc-*, libvirtd + QEMU, kube-apiserver + etcd (two groups of files at once; E2E_JOBS=1: one by one)
e2e: build host
	E2E_JOBS=$(E2E_JOBS) bash scripts/run-e2e.sh

## test: everything CI runs: set-up, build, lint, then the three tiers, quickest first
test: deps build lint
	npx mocha $(UNIT_TESTS)
	npx mocha --timeout 60000 --exit $(INTEGRATION_TESTS)
	E2E_JOBS=$(E2E_JOBS) bash scripts/run-e2e.sh

## run: the daemon on the embedded default (dir:./examples, state in ./.hyperlet)
run: deps build
	node bin/hyperlet.js run --source dir:./examples

bench: deps build
	node dist/bench/run-all.js

crds: build
	node bin/hyperlet.js crds --out crds

clean:
	rm -rf dist
