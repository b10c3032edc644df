# Makefile -- build, run and test the WebSocket echo server.
#
#   make run     build and start the server on ws://localhost:5175
#   make run-tls the same on wss://localhost:5175, with a certificate of its own
#   make test    build and run every test
#   make help    list every target
#
# Building needs a C compiler, pkg-config, OpenSSL (libcrypto and libssl) and
# zlib; only the tests need Check (the unit-test library) and Python's
# websockets. The targets for maintainers and CI (sanitizers, fuzzing,
# linting, benchmarks) are in maintainer.mk, included at the end.
#
# CC, CFLAGS, LDFLAGS, PREFIX, DESTDIR and PKG_CONFIG can be set on the
# command line, e.g. "make CC=clang" or "make CFLAGS='-O0 -g'".

CC         ?= cc
CFLAGS     ?= -O2 -g
LDFLAGS    ?=
PREFIX     ?= /usr/local
DESTDIR    ?=
PKG_CONFIG ?= pkg-config
BINDIR      = $(PREFIX)/bin
MANDIR      = $(PREFIX)/share/man/man1
DATADIR     = $(PREFIX)/share/websocket-echo
PYTHON     ?= $(firstword $(wildcard /usr/bin/python3) python3)

# Always on: the language level and the warnings we keep the code clean of.
WARNINGS   = -Wall -Wextra -Wpedantic
ALL_CFLAGS = -std=c11 $(WARNINGS) -pthread $(CFLAGS)

# Library flags come from pkg-config. "=" (not ":=") defers the call until a
# recipe runs, which is after "deps" (or "check-deps") has installed them.
CRYPTO_CFLAGS = $(shell $(PKG_CONFIG) --cflags libssl libcrypto)
CRYPTO_LIBS   = $(shell $(PKG_CONFIG) --libs libssl libcrypto)
ZLIB_CFLAGS   = $(shell $(PKG_CONFIG) --cflags zlib)
ZLIB_LIBS     = $(shell $(PKG_CONFIG) --libs zlib)
CHECK_CFLAGS  = $(shell $(PKG_CONFIG) --cflags check)
CHECK_LIBS    = $(shell $(PKG_CONFIG) --libs check)

# What a fresh Debian or Ubuntu machine needs besides a C compiler: to build
# the server; then, for the tests only, Check and Python's websockets.
BUILD_PACKAGES = pkg-config libssl-dev zlib1g-dev
CHECK_PACKAGES = check
TEST_PACKAGES  = python3-websockets

# Every .c file of this folder is part of the server, so that a file you add
# (the coursework's event_loop.c, say) is built with the rest.
SERVER_OBJECTS = $(patsubst %.c,%.o,$(sort $(wildcard *.c)))
# Libraries your own change needs: "make EXTRA_LIBS=-lhiredis" (coursework).
EXTRA_LIBS =
TEST_PROGRAMS  = tests/unit_tests tests/integration_tests tests/reliability_tests \
	tests/conformance_tests
CLEAN_FILES    = server *.o $(TEST_PROGRAMS)

.PHONY: all run run-tls test test-programs unit integration reliability conformance interop \
	deps check-deps test-deps install uninstall clean help

all: server ## build the server

run: server ## build and start the server on ws://localhost:5175
	./server

# A certificate that says it is localhost, signed by itself: enough for a
# classroom (a browser asks once whether to trust it), never for the open
# Internet (there, use one from a certificate authority: README, "wss://").
TLS_DIR = build/tls

$(TLS_DIR)/cert.pem:
	mkdir -p $(TLS_DIR)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
		-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1 \
		-keyout $(TLS_DIR)/key.pem -out $@ 2>/dev/null

run-tls: server $(TLS_DIR)/cert.pem ## the same on wss://localhost:5175, with a self-signed certificate
	./server --tls-cert $(TLS_DIR)/cert.pem --tls-key $(TLS_DIR)/key.pem \
		--client-page web/client.html

test: server $(TEST_PROGRAMS) | test-deps ## build and run every test
	@PYTHON=$(PYTHON) sh tests/run_all.sh

test-programs: check-deps $(TEST_PROGRAMS) ## build the test programs without running them

unit: tests/unit_tests ## unit tests of ws.c (accept key, parsing, frames, UTF-8, close codes)
	tests/unit_tests

integration: server tests/integration_tests ## the real server over loopback
	tests/integration_tests

reliability: server tests/reliability_tests ## timeouts, limits, origins, shutdown, logging
	tests/reliability_tests

conformance: server tests/conformance_tests ## Autobahn-style protocol cases, sections 1-7, 9, 10
	tests/conformance_tests

interop: server | test-deps ## a client nobody here wrote: Python's websockets
	$(PYTHON) tests/interop_websockets.py ./server

# The server: needs libcrypto (for SHA-1 and base64 in the handshake),
# libssl (for wss://) and zlib (for permessage-deflate), no more. Everything
# that links ws.o needs them all: WS_LIBS says so once.
WS_LIBS = $(CRYPTO_LIBS) $(ZLIB_LIBS)

server: $(SERVER_OBJECTS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(SERVER_OBJECTS) $(WS_LIBS) $(EXTRA_LIBS)

%.o: %.c ws.h notifier.h | deps
	$(CC) $(ALL_CFLAGS) $(CRYPTO_CFLAGS) $(ZLIB_CFLAGS) -c -o $@ $<

# The test programs: these, and only these, need Check.
tests/unit_tests: tests/test_ws.c ws.o ws.h | check-deps
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) $(ZLIB_CFLAGS) $(LDFLAGS) -o $@ tests/test_ws.c ws.o \
		$(CHECK_LIBS) $(WS_LIBS)

tests/integration_tests: tests/test_server.c tests/client.c tests/client.h ws.o ws.h | check-deps
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) $(LDFLAGS) -o $@ $< tests/client.c ws.o \
		$(CHECK_LIBS) $(WS_LIBS)

tests/reliability_tests: tests/test_reliability.c tests/client.c tests/client.h ws.o ws.h \
		| check-deps
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) $(LDFLAGS) -o $@ $< tests/client.c ws.o \
		$(CHECK_LIBS) $(WS_LIBS)

tests/conformance_tests: tests/test_conformance.c tests/client.c tests/client.h ws.o ws.h \
		| check-deps
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) $(LDFLAGS) -o $@ $< tests/client.c ws.o \
		$(CHECK_LIBS) $(WS_LIBS)

# Installs Debian packages ($(1)) unless the shell test $(2) passes. The
# command is printed before it runs (with sudo when you are not root); on a
# system without apt-get it is only printed, and make stops.
define install_if_missing
	@if $(2); then exit 0; fi; \
	sudo=; [ "$$(id -u)" = 0 ] || sudo="sudo "; \
	cmd="$${sudo}apt-get update && $${sudo}apt-get install -y $(1)"; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "Missing: $(1). On Debian or Ubuntu run: $$cmd"; \
	    exit 1; \
	fi; \
	echo "Installing what is missing: $$cmd"; \
	sh -c "$$cmd"
endef

deps: ## install pkg-config, OpenSSL (libssl-dev) and zlib, if pkg-config cannot find them
	$(call install_if_missing,$(BUILD_PACKAGES),$(PKG_CONFIG) --exists libssl libcrypto zlib 2>/dev/null)

check-deps: | deps ## install Check, the unit-test library, if pkg-config cannot find it
	$(call install_if_missing,$(CHECK_PACKAGES),$(PKG_CONFIG) --exists check 2>/dev/null)

test-deps: ## install Python's websockets for the interoperability test, if it is missing
	$(call install_if_missing,$(TEST_PACKAGES),$(PYTHON) -c 'import websockets' 2>/dev/null)

install: server ## install the server, server.1 and the client page under $(DESTDIR)$(PREFIX)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR) $(DESTDIR)$(DATADIR)
	install -m 755 server $(DESTDIR)$(BINDIR)/server
	install -m 644 server.1 $(DESTDIR)$(MANDIR)/server.1
	install -m 644 web/client.html $(DESTDIR)$(DATADIR)/client.html

uninstall: ## remove what "make install" installed (same PREFIX and DESTDIR)
	rm -f $(DESTDIR)$(BINDIR)/server $(DESTDIR)$(MANDIR)/server.1 \
		$(DESTDIR)$(DATADIR)/client.html
	-rmdir $(DESTDIR)$(DATADIR) 2>/dev/null

clean: ## remove everything the build made
	rm -f $(CLEAN_FILES)

# Every line "target: ... ## what it does", from this file first, then from
# maintainer.mk under its own heading.
help: ## list the targets
	@awk -F':.*## ' 'FNR == 1 && NR > 1 { printf "\nFor maintainers and CI (%s):\n", FILENAME } \
		/^[a-z-]+:.*## / { printf "  make %-13s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

# Last, so that "make" alone still means "make all".
include maintainer.mk
