# Switchyard build and test entry points. `make test` is what CI runs.
SHELL    := /bin/bash
GO        ?= go
FUZZTIME  ?= 20000x
# Packages whose tests need no external servers.
UNIT_PKGS := $(shell $(GO) list ./... | grep -v /test/e2e)

.PHONY: all build run playground test unit e2e fuzz fuzz-long lint bench bench-migration soak deps clean

all: build

VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GITHASH   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X github.com/switchyard-db/switchyard/pkg/server.Version=$(VERSION) -X github.com/switchyard-db/switchyard/pkg/server.GitHash=$(GITHASH)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/proxy ./cmd/proxy
	$(GO) build -o bin/proxyctl ./cmd/proxyctl

# Runs the proxy in front of a throwaway local MariaDB (see README).
run:
	@bash scripts/quickstart.sh

# Starts the local demo: clusters east and west, each with its own embedded etcd and two
# MariaDB servers registered in it, behind the proxy (see README). Ctrl-C stops it all.
# bin/proxyctl is built too; the playground prints the --api address to use it with.
# Flags go in PLAYGROUND_ARGS, e.g. PLAYGROUND_ARGS="--port 7000". Built, not `go run`:
# go run exits 1 after Ctrl-C even when the playground stopped cleanly.
playground:
	@bash scripts/install-deps.sh mariadb
	$(GO) build -o bin/playground ./cmd/playground
	$(GO) build -o bin/proxyctl ./cmd/proxyctl
	bin/playground $(PLAYGROUND_ARGS)

# Installs what the tests need on a Debian machine (idempotent; root only).
deps:
	@bash scripts/install-deps.sh

test: deps lint unit e2e fuzz

unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)
	# The session package again with every session on event loops (proxy.event-loops):
	# one loop (on two or more CPUs it blocks in epoll_wait) and two (they park in the
	# netpoller on two CPUs).
	SWITCHYARD_TEST_EVENT_LOOPS=1 $(GO) test -race -count=1 ./pkg/proxy/backend
	SWITCHYARD_TEST_EVENT_LOOPS=2 $(GO) test -race -count=1 ./pkg/proxy/backend
	# Without the race detector: the codec whole (its payloads over 1 MiB run
	# only here), and the session's allocation tests, which the race
	# detector's pools would upset.
	$(GO) test -count=1 ./pkg/mysql
	$(GO) test -count=1 -run 'Allocat' ./pkg/proxy/backend

# The end-to-end suite starts real MariaDB servers and the real binary (built
# with -race: a data race or panic in it fails the test that caused it). A
# skipped end-to-end test fails the target: a skip is not a pass.
# On failure, each failed test's own output (assertions, log tails) is printed
# from bin/e2e.log by scripts/e2e-failures.sh.
e2e: build
	@set -o pipefail; SWITCHYARD_PROXY_RACE=1 SWITCHYARD_SUITE_REPORT_DIR=$(CURDIR)/bin $(GO) test -count=1 -parallel 4 -timeout 45m -v ./test/e2e/ 2>&1 | tee bin/e2e.log | grep -E '^ *(=== RUN|--- |PASS|FAIL|ok|panic)' ; status=$$?; \
	if [ $$status -ne 0 ]; then bash scripts/e2e-failures.sh bin/e2e.log || true; fi; \
	if grep -q -- '--- SKIP' bin/e2e.log; then echo "FAIL: end-to-end tests were skipped:"; grep -- '--- SKIP' bin/e2e.log; exit 1; fi; \
	exit $$status

# Runs every fuzz target briefly on top of its seed corpus.
fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

# Runs the fuzz targets of the parsers that read what others send (etcd's
# topology JSON, the API's bodies, COM_STMT_* parameters, compressed packets,
# the migration's statement scanner, the scraped /metrics lines) for FUZZLONG each, one after another, and
# keeps the corpus they grow in the packages' testdata/fuzz (not part of make test).
FUZZLONG ?= 10m
fuzz-long:
	@bash scripts/fuzz-long.sh $(FUZZLONG) ./pkg/topology:FuzzTopologyEvents ./pkg/server/api:FuzzAPIBodies \
		./pkg/proxy/backend:FuzzStmtCommands ./pkg/mysql:FuzzCompressedRead ./pkg/proxy/backend:FuzzScanStatement \
		./pkg/metricsreader:FuzzParseExposition

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# bench/run.sh, then the session migration scenario (BENCH_MIGRATION=0 skips it).
bench: build
	bash bench/run.sh
	@if [ "$(BENCH_MIGRATION)" != 0 ]; then bash bench/migration.sh; fi

# Session migration under load: sysbench while a backend is drained and undrained every
# 10 s, and the time to move 1,000 idle sessions (bench/migration.sh; BENCH_QUICK=1: 20 s).
bench-migration: build
	bash bench/migration.sh

# Soak under chaos (test/soak, build tag "soak"; never part of `make test`): two clusters
# behind two proxies of a fleet, sysbench and counting clients, 1,000 idle connections, a
# reload every 10 s, a backend SIGKILLed every 60 s, etcd and a proxy restarted once.
# Fails when an invariant breaks; the report is bin/soak/report.{txt,json}.
# SOAK_DURATION=2m shortens the chaos phase (at least 2m); SOAK_IDLE, SOAK_RATE, SOAK_WARMUP
# tune the load (docs/operations.md).
SOAK_DURATION ?= 10m
soak: build
	rm -rf bin/soak
	SOAK_DURATION=$(SOAK_DURATION) SWITCHYARD_PROXY_BIN=$(CURDIR)/bin/proxy SOAK_REPORT_DIR=$(CURDIR)/bin/soak \
		$(GO) test -tags soak -count=1 -timeout 90m -v -run '^TestSoak$$' ./test/soak/

clean:
	rm -rf bin bench/.out .quickstart
