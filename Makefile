# Berth's entry points. `make run` and `make test` work on a fresh Debian 12
# machine as root: they install what they need first.

CARGO ?= cargo
PROFILE ?= debug
export CARGO_TARGET_DIR ?= $(CURDIR)/target
BIN_DIR := $(CARGO_TARGET_DIR)/$(PROFILE)
CARGO_PROFILE_FLAG := $(if $(filter release,$(PROFILE)),--release,)

# protoc for the gRPC contracts; busybox-static for test images; attr (getfattr)
# to check overlay xattrs; curl for raw TLS checks; iproute2 (ip) to check and
# clean up the test daemons' bridges; nftables (nft) for Berth's NAT and isolation rules;
# libseccomp-dev (and pkg-config) for the shim's seccomp filters.
DEBIAN_PACKAGES := protobuf-compiler busybox-static attr curl ca-certificates iproute2 nftables libseccomp-dev pkg-config procps

# Flags for `make run`; the defaults serve unix:///run/berth/berth.sock with
# state under /var/lib/berth.
BERTHD_FLAGS ?=

.PHONY: all deps test-deps build run test test-unit test-e2e test-e2e-postgres test-python test-bench-smoke bench bench-deps lint fmt clean install install-files image

all: build

deps:
	@missing=""; \
	for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v docker >/dev/null || { echo "installing the docker CLI (docker.io)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; }
	@command -v $(CARGO) >/dev/null || { echo "cargo is required (rustup)"; exit 1; }

build: deps
	$(CARGO) build --workspace --bins $(CARGO_PROFILE_FLAG)

run: build
	$(BIN_DIR)/berthd $(BERTHD_FLAGS)

# `make install PROFILE=release [PREFIX=/usr/local] [DESTDIR=...]`: the
# binaries, the systemd units (their paths rewritten for PREFIX) and a
# commented example berth.toml. `install-files` installs what is built already.
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= $(if $(filter /usr /usr/local,$(PREFIX)),/etc,$(PREFIX)/etc)
INSTALL_BIN_DIR ?= $(BIN_DIR)
BINARIES := berthd berth-gateway berth-image berth-runtime berth-network berth-volume berth-shim

install: build install-files

install-files:
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(SYSCONFDIR)/berth
	for b in $(BINARIES); do install -m 0755 $(INSTALL_BIN_DIR)/$$b $(DESTDIR)$(PREFIX)/bin/$$b; done
	for u in deploy/systemd/*; do \
		sed 's|/usr/local/bin/|$(PREFIX)/bin/|g' $$u > $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename $$u); \
		chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename $$u); done
	install -m 0644 deploy/berth.toml.example $(DESTDIR)$(SYSCONFDIR)/berth/berth.toml.example

# Berth's container image (deploy/Containerfile) from the release binaries and
# the libraries they load, built by the engine DOCKER_HOST names (dockerd, or
# Berth itself); deploy/compose.yaml runs it as the split services.
IMAGE ?= berth:latest
image:
	$(MAKE) build PROFILE=release
	deploy/image-rootfs.sh $(CARGO_TARGET_DIR)/release $(CARGO_TARGET_DIR)/image-rootfs
	DOCKER_BUILDKIT=0 docker build -f deploy/Containerfile -t $(IMAGE) $(CARGO_TARGET_DIR)/image-rootfs

# The gateway links API crates only: no netlink, nftables, registry, tar or
# database code may creep into it.
GATEWAY_FORBIDDEN := ^(rtnetlink|netlink-[a-z-]+|nftables|oci-client|oci-spec|reqwest|tar|flate2|ruzstd|xattr|sqlx[a-z-]*) v

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@if $(CARGO) tree -p berth-gateway -e normal --prefix none | grep -E '$(GATEWAY_FORBIDDEN)'; then \
		echo "berth-gateway links the crates above; it must depend on the services' API crates only"; exit 1; fi

test-unit: deps
	$(CARGO) test --workspace --exclude berth-tests --exclude berth-bench

# Packages a test or the benchmark needs and `make run` does not: dockerd
# (docker.io) and iptables, to check Berth beside dockerd; Debian's registry
# (docker-registry), htpasswd (apache2-utils) and openssl for the registry tests.
# runc and tini (its tini-static) for `--runtime runc`, which docker.io pulls in too.
# bzip2 and xz-utils make the compressed build contexts of the build tests;
# python3-venv for the Python clients' virtualenv; docker-compose (1.29.2) for
# the Compose project test.
TEST_PACKAGES := docker.io runc tini iptables docker-registry apache2-utils openssl bzip2 xz-utils python3-venv docker-compose systemd postgresql

test-deps: deps
	@missing=""; for p in $(TEST_PACKAGES) $(EXTRA_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

# End-to-end tests start berthd (and the split services) on temporary roots and
# drive them with the docker CLI and bollard. They need root.
test-e2e: build test-deps
	BERTH_BIN_DIR=$(BIN_DIR) $(CARGO) test -p berth-tests $(CARGO_PROFILE_FLAG) -- --test-threads=4

# The end-to-end suites again, each daemon's state in Postgres (a database of
# its own on a server the tests start as the postgres user on a temporary
# directory and port). Left out: those with no daemon state of their own
# (dockerd beside Berth, the container image, systemd units, the shim's
# protocol) and those that already run on both back ends (stores, postgres).
POSTGRES_SKIP := beside_dockerd deploy systemd shim_protocol stores postgres
POSTGRES_SUITES := $(patsubst tests/tests/%.rs,--test %,$(filter-out $(POSTGRES_SKIP:%=tests/tests/%.rs),$(sort $(wildcard tests/tests/*.rs))))
test-e2e-postgres: build test-deps
	BERTH_TEST_STATE=postgres BERTH_BIN_DIR=$(BIN_DIR) $(CARGO) test -p berth-tests $(CARGO_PROFILE_FLAG) \
		$(POSTGRES_SUITES) -- --test-threads=4

# docker-py and testcontainers (PyPI, pinned in tests/python/requirements.txt)
# against berthd, from a virtualenv under the target directory, made once and
# again when the pins change.
PYENV := $(CARGO_TARGET_DIR)/pyenv
$(PYENV)/.installed: tests/python/requirements.txt
	python3 -m venv $(PYENV)
	$(PYENV)/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
	touch $@

test-python: build test-deps $(PYENV)/.installed
	BERTH_BIN_DIR=$(BIN_DIR) $(PYENV)/bin/python -m pytest -q -p no:cacheprovider tests/python

# The benchmark, once, small, against Berth only: it must not rot.
test-bench-smoke: build test-deps
	BERTH_BIN_DIR=$(BIN_DIR) $(BIN_DIR)/berth-bench --smoke --out $$(mktemp -d)

test: lint test-unit test-e2e test-e2e-postgres test-python test-bench-smoke

# Berth against dockerd (Debian's docker.io), side by side, release builds.
# Results: bench/results/latest.{json,md,png}. See bench/README.md.
bench-deps:
	$(MAKE) test-deps EXTRA_PACKAGES=python3-matplotlib

bench: bench-deps
	$(CARGO) build --workspace --bins --release
	BERTH_BIN_DIR=$(CARGO_TARGET_DIR)/release $(CARGO_TARGET_DIR)/release/berth-bench --out bench/results

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
