SHELL := /bin/bash
# Skein — see README.md. Every target works as root on a fresh Debian 12 machine:
# `make test` and `make demo` install the Debian packages they use themselves
# (.ci/deps: one dpkg query when they are there; `make deps-dry-run` lists them).
GO        ?= go
BIN       := $(CURDIR)/bin
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
GOFLAGS_B := -trimpath -ldflags '$(LDFLAGS)'

.PHONY: all build tools test unit race fuzz fuzz-short e2e bench demo lint deps deps-dry-run clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build $(GOFLAGS_B) -o $(BIN)/ ./cmd/skeind ./cmd/skein ./cmd/skein-kube
	$(GO) build $(GOFLAGS_B) -o $(BIN)/skein-cni ./cni-plugin

# Reference tools used by e2e and bench: cnitool and the reference plugins, built
# from the Go modules Skein already depends on, and kube-apiserver (its own
# module, tools/kube: 10-30 minutes the first time, then kept per version).
KUBE_VERSION   := v1.37.2
KUBE_APISERVER := $(BIN)/kube-apiserver-$(KUBE_VERSION)

$(KUBE_APISERVER):
	@mkdir -p $(BIN)
	cd tools/kube && nice $(GO) build -trimpath -ldflags '-s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION)' -o $@.tmp k8s.io/kubernetes/cmd/kube-apiserver
	mv $@.tmp $@

tools: $(KUBE_APISERVER)
	ln -sf $(notdir $(KUBE_APISERVER)) $(BIN)/kube-apiserver
	@mkdir -p $(BIN)/ref
	$(GO) build -o $(BIN)/cnitool github.com/containernetworking/cni/cnitool
	GOBIN=$(BIN)/ref $(GO) install github.com/containernetworking/plugins/plugins/main/bridge@v1.10.0 \
		github.com/containernetworking/plugins/plugins/ipam/host-local@v1.10.0 \
		github.com/containernetworking/plugins/plugins/main/loopback@v1.10.0

# The packages the tests use, lint, unit + integration (privileged ones run as
# root inside throwaway namespaces), the race detector on the concurrent
# packages, every fuzz target briefly, and e2e on the lab.
test: deps build tools lint unit race fuzz-short e2e

unit:
	$(GO) test -count=1 -timeout 15m ./...

# The packages where goroutines meet: the agent, the plugin, address
# allocation and the store (with its embedded etcd).
RACE_PKGS ?= ./agent/ ./cni-plugin/ ./ipam/ ./store/
race:
	$(GO) test -race -count=1 -timeout 10m $(RACE_PKGS)

# Every FuzzXxx in the repo (found with go test -list), one after the other
# with 2 workers: FUZZTIME each for `make fuzz`, FUZZ_SHORT each in `make test`
# so that a regression on a committed or cached input fails CI. FUZZ_SHORT is
# a count, not a duration: with a short duration on a loaded machine the fuzz
# engine can stop mid-baseline and report its own "context deadline exceeded".
FUZZTIME   ?= 30s
FUZZ_SHORT ?= 1000x
fuzz:
	GO=$(GO) bash scripts/fuzz.sh $(FUZZTIME)

fuzz-short:
	GO=$(GO) bash scripts/fuzz.sh $(FUZZ_SHORT)

e2e:
	SKEIN_BIN=$(BIN) $(GO) test -count=1 -tags e2e -timeout 20m -v ./e2e/

bench: build tools
	bash .ci/deps test bench
	SKEIN_BIN=$(BIN) $(GO) run ./bench -bin $(BIN) -out docs/benchmarks.md

demo: build  ## BACKEND=bgp [TOR=bird|frr] IPV6=1 ENCRYPTION=wireguard DIRECT=1 KEEP=1 LAB=name are optional
	bash .ci/deps demo $(TOR)
	BIN=$(BIN) bash scripts/demo.sh

# golangci-lint (errcheck, staticcheck, forbidigo; .golangci.yml), pinned and
# built once from the Go module proxy into bin/ (a few minutes the first time).
GOLANGCI_VERSION := v2.15.0
GOLANGCI         := $(BIN)/golangci-lint-$(GOLANGCI_VERSION)

$(GOLANGCI):
	@mkdir -p $(BIN)/.golangci
	GOBIN=$(BIN)/.golangci $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)
	mv $(BIN)/.golangci/golangci-lint $@

lint: $(GOLANGCI)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	GOOS=darwin CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/skein  # admins run the CLI on macOS too
	$(GOLANGCI) run ./...

deps:
	bash .ci/deps

# What `make deps` would install on a machine with none of the packages
# (an empty dpkg database), then what it would install here.
deps-dry-run:
	@mkdir -p $(BIN)/.nodpkg/info && touch $(BIN)/.nodpkg/status
	@echo "fresh machine, make test:"; DPKG_ADMINDIR=$(BIN)/.nodpkg bash .ci/deps --dry-run
	@echo "fresh machine, make demo:"; DPKG_ADMINDIR=$(BIN)/.nodpkg bash .ci/deps --dry-run demo
	@echo "this machine, make test:"; bash .ci/deps --dry-run

clean:
	rm -rf $(BIN)

# Install on this host: the binaries, the CNI plugin and conflist, the systemd
# unit and its environment file. DESTDIR stages into a directory (packaging);
# an existing conflist or environment file is kept. Then edit /etc/default/skeind
# and `systemctl daemon-reload && systemctl enable --now skeind` (docs/install.md).
PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
CNI_BIN_DIR  ?= /opt/cni/bin
CNI_CONF_DIR ?= /etc/cni/net.d
UNIT_DIR     ?= /etc/systemd/system
DEFAULT_DIR  ?= /etc/default
BASH_COMP_DIR ?= /usr/share/bash-completion/completions

.PHONY: install
install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(CNI_BIN_DIR) $(DESTDIR)$(CNI_CONF_DIR) \
		$(DESTDIR)$(UNIT_DIR) $(DESTDIR)$(DEFAULT_DIR) $(DESTDIR)$(BASH_COMP_DIR)
	install -m 0755 $(BIN)/skeind $(BIN)/skein $(DESTDIR)$(BINDIR)/
	install -m 0755 $(BIN)/skein-cni $(DESTDIR)$(CNI_BIN_DIR)/
	sed 's|@BINDIR@|$(BINDIR)|g' deploy/skeind.service > $(DESTDIR)$(UNIT_DIR)/skeind.service
	chmod 0644 $(DESTDIR)$(UNIT_DIR)/skeind.service
	test -e $(DESTDIR)$(CNI_CONF_DIR)/10-skein.conflist || install -m 0644 deploy/10-skein.conflist $(DESTDIR)$(CNI_CONF_DIR)/
	test -e $(DESTDIR)$(DEFAULT_DIR)/skeind || install -m 0600 deploy/skeind.env $(DESTDIR)$(DEFAULT_DIR)/skeind
	$(BIN)/skein completion bash > $(DESTDIR)$(BASH_COMP_DIR)/skein
	@echo "installed under $(if $(DESTDIR),$(DESTDIR),/); next: edit $(DEFAULT_DIR)/skeind, then systemctl daemon-reload && systemctl enable --now skeind"
