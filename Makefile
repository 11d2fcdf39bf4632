# hyperlet: `make run` sets the host up and runs the daemon on examples/; `make test` sets up and passes every test.
SHELL := /bin/bash
NODE_STAMP := node_modules/.install-stamp
SOURCES := $(shell find src test bench scripts -name '*.ts' 2>/dev/null)

.PHONY: deps host build lint unit e2e test run bench clean crds

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
	touch $@

build: dist/.build-stamp

## lint: eslint, the layer order (scripts/check-layers.ts), a doc comment on every export (scripts/check-docs.ts)
lint: build
	npx eslint --max-warnings 0 src test bench scripts
	node dist/scripts/check-layers.js
	node dist/scripts/check-docs.js

## unit: the quick inner loop, fakes at the provider boundary only
unit: build
	npx mocha 'dist/test/unit/**/*.test.js'

## e2e: real lxc-*, libvirtd + QEMU, kube-apiserver + etcd
e2e: build host
	npx mocha --timeout 900000 --exit 'dist/test/e2e/**/*.e2e.js'

## test: everything CI runs
test: deps build lint
	npx mocha --timeout 900000 --exit 'dist/test/unit/**/*.test.js' 'dist/test/e2e/**/*.e2e.js'

## run: the daemon on the embedded default (dir:./examples, state in ./.hyperlet)
run: deps build
	node bin/hyperlet.js run --source dir:./examples

bench: deps build
	node dist/bench/run-all.js

crds: build
	node bin/hyperlet.js crds --out crds

clean:
	rm -rf dist
