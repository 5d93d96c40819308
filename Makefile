# greyd — see README.md. `make check` is the one command that runs every
# test (it installs what the tests need; CI runs it as root).

VERSION    := $(shell cat VERSION 2>/dev/null || echo dev)
GO         ?= go
GOFLAGS_B  := -trimpath -ldflags "-X main.version=$(VERSION)"
FUZZTIME   ?= 10s

.PHONY: all build run test fuzz vet activation promtool-test e2e package check-packages systemd-test bench bench-scale deps check clean

all: build

build:
	$(GO) build $(GOFLAGS_B) -o build/greyd ./cmd/greyd
	$(GO) build $(GOFLAGS_B) -o build/greyd-bench ./cmd/greyd-bench

# Run greyd in the foreground with the development configuration
# (127.0.0.1:10023, state in build/state). Ctrl-C stops it.
run: build
	./build/greyd -config dev/greyd.hcl

vet:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# Unit and integration tests (the integration tests build and run the
# real binary over real sockets).
test:
	$(GO) test -race -count=1 ./...
	# The race detector's sync.Pool drops items on purpose: the
	# allocation checks also run without it.
	$(GO) test -count=1 -run 'TestDecisionStaysOnStack' ./internal/greylist/

# Socket activation and sd_notify from the source tree, without systemd as
# PID 1: greyd under systemd-socket-activate with a fake NOTIFY_SOCKET.
activation: build
	$(GO) run ./dist/sdtest -bin build/greyd

# The alerting rules shipped in dist/prometheus: syntax, then their unit
# tests (promtool comes with Debian's prometheus package; make deps).
promtool-test:
	promtool check rules dist/prometheus/greyd-rules.yml
	cd dist/prometheus && promtool test rules greyd-rules_test.yml

# Every fuzz target for FUZZTIME each (make fuzz FUZZTIME=10m for longer).
fuzz:
	./test/fuzz.sh $(FUZZTIME)

# End-to-end with a real Postfix (installs it; needs root).
e2e: build
	./test/e2e/run.sh

package:
	./dist/package.sh

check-packages: package
	./dist/check-packages.sh

# The packaged units under systemd as PID 1: the .deb in a Debian 12
# container (systemd-nspawn), Postfix, the journal, crashes, the watchdog,
# an upgrade and removal (needs root; test/systemd/README.md).
systemd-test: package
	./test/systemd/run.sh

bench:
	./bench/run.sh

bench-scale:
	./bench/scale.sh

deps:
	./dist/install-deps.sh

# Everything CI runs.
check: deps vet test promtool-test activation fuzz e2e check-packages systemd-test

clean:
	rm -rf build
