# Makefile -- build, run and test the WebSocket echo server.
#
#   make run     build and start the server on ws://localhost:5175
#   make test    build and run every test
#   make help    list every target
#
# CC, CFLAGS, LDFLAGS, PREFIX and DESTDIR can be set on the command line,
# e.g. "make CC=clang" or "make CFLAGS='-O0 -g'".

CC      ?= cc
CFLAGS  ?= -O2 -g
LDFLAGS ?=
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR   = $(PREFIX)/bin
MANDIR   = $(PREFIX)/share/man/man1
DATADIR  = $(PREFIX)/share/websocket-echo
PYTHON  ?= $(firstword $(wildcard /usr/bin/python3) python3)

# A comma, for arguments of $(call) that contain one.
, := ,

# Always on: the language level and the warnings we keep the code clean of.
WARNINGS   = -Wall -Wextra -Wpedantic
ALL_CFLAGS = -std=c11 $(WARNINGS) -pthread $(CFLAGS)

# Library flags come from pkg-config. "=" (not ":=") defers the call until a
# recipe runs, which is after the "deps" target has installed the libraries.
CRYPTO_CFLAGS = $(shell pkg-config --cflags libcrypto)
CRYPTO_LIBS   = $(shell pkg-config --libs libcrypto)
CHECK_CFLAGS  = $(shell pkg-config --cflags check)
CHECK_LIBS    = $(shell pkg-config --libs check)

# What a fresh Debian or Ubuntu machine needs besides a C compiler, to build
# and to run the tests.
BUILD_PACKAGES = pkg-config libssl-dev check
TEST_PACKAGES  = python3-websockets
BENCH_PACKAGES = nodejs npm

SERVER_OBJECTS = server.o ws.o notifier.o
TEST_PROGRAMS  = tests/unit_tests tests/integration_tests tests/reliability_tests \
	tests/conformance_tests

.PHONY: all run test test-programs unit integration reliability conformance interop deps test-deps lint \
	format format-check bench bench-deps bench-smoke sanitize valgrind fuzz stress demo-nginx install uninstall clean help

all: server ## build the server

run: server ## build and start the server on ws://localhost:5175
	./server

test: server $(TEST_PROGRAMS) | test-deps ## build and run every test
	@PYTHON=$(PYTHON) sh tests/run_all.sh

test-programs: $(TEST_PROGRAMS) ## build the test programs without running them

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

server: $(SERVER_OBJECTS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(SERVER_OBJECTS) $(CRYPTO_LIBS)

%.o: %.c ws.h notifier.h | deps
	$(CC) $(ALL_CFLAGS) $(CRYPTO_CFLAGS) -c -o $@ $<

tests/unit_tests: tests/test_ws.c ws.o ws.h | deps
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) $(LDFLAGS) -o $@ tests/test_ws.c ws.o \
		$(CHECK_LIBS) $(CRYPTO_LIBS)

tests/integration_tests: tests/test_server.c tests/client.c tests/client.h ws.o ws.h | deps
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) $(LDFLAGS) -o $@ $< tests/client.c ws.o \
		$(CHECK_LIBS) $(CRYPTO_LIBS)

tests/reliability_tests: tests/test_reliability.c tests/client.c tests/client.h ws.o ws.h | deps
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) $(LDFLAGS) -o $@ $< tests/client.c ws.o \
		$(CHECK_LIBS) $(CRYPTO_LIBS)

tests/conformance_tests: tests/test_conformance.c tests/client.c tests/client.h ws.o ws.h | deps
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) $(LDFLAGS) -o $@ $< tests/client.c ws.o \
		$(CHECK_LIBS) $(CRYPTO_LIBS)

bench/loadgen: bench/loadgen.c ws.o ws.h | deps
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ bench/loadgen.c ws.o $(CRYPTO_LIBS)

bench/peers/tcp_echo: bench/peers/tcp_echo.c
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $<

bench: server bench/loadgen bench/peers/tcp_echo | test-deps bench-deps ## ours vs Node ws, Python websockets, TCP echo
	$(PYTHON) bench/run.py

bench-deps: ## install Node.js and npm for the benchmark's Node ws peer, if missing
	$(call install_if_missing,$(BENCH_PACKAGES),command -v node >/dev/null && command -v npm >/dev/null)

bench-smoke: server bench/loadgen ## every benchmark mode for a second, against our server only
	$(PYTHON) bench/run.py --smoke

demo-nginx: server | test-deps ## two servers behind nginx with TLS: wss://localhost:8443 (Ctrl+C stops)
	$(PYTHON) tests/nginx_demo.py --demo

stress: server bench/loadgen ## 1,000 clients x 1,000 messages, 100 misbehaving, memory and exit checked
	$(PYTHON) tests/stress.py

# The test suites again, under the sanitizers: AddressSanitizer with
# UndefinedBehaviorSanitizer (memory errors, undefined behaviour), then
# ThreadSanitizer (data races). A report aborts the server or the test, and
# the suite fails. Conformance section 9 (messages up to 16 MiB, in 64-byte
# fragments) is left out here: it runs the code paths of sections 1 and 5
# again at sizes that take minutes under ThreadSanitizer.
SANITIZED_SECTIONS = "1 framing" "2 ping/pong" "3 reserved bits" "4 opcodes" \
	"5 fragmentation" "6 UTF-8" "7 close handling" "10 auto-fragmentation"

define run_sanitized
	$(MAKE) --no-print-directory clean >/dev/null
	$(MAKE) --no-print-directory server $(TEST_PROGRAMS) CC=clang CFLAGS="-O1 -g $(1)" \
		LDFLAGS="$(1)"
	tests/unit_tests
	CK_TIMEOUT_MULTIPLIER=10 tests/integration_tests
	CK_TIMEOUT_MULTIPLIER=3 tests/reliability_tests
	for section in $(SANITIZED_SECTIONS); do \
		CK_RUN_CASE="$$section" CK_TIMEOUT_MULTIPLIER=10 tests/conformance_tests || exit 1; \
	done
	$(PYTHON) tests/interop_websockets.py ./server
endef

sanitize: | test-deps ## the tests under ASan+UBSan, then under TSan
	$(call run_sanitized,-fno-omit-frame-pointer -fsanitize=address$(,)undefined -fno-sanitize-recover=all)
	$(call run_sanitized,-fsanitize=thread)
	$(MAKE) --no-print-directory clean >/dev/null

# The integration and reliability tests against the server running under
# valgrind (tests/valgrind_server.sh). Each server exits by itself on SIGTERM;
# valgrind's exit status fails the suite on any memory error or leak, and its
# report must be empty too. One case is left out: valgrind runs one thread at
# a time, so starting a thousand of them takes longer than the 2-second
# handshake timeout that test races against.
VALGRIND_LOGS = build/valgrind

valgrind: server tests/integration_tests tests/reliability_tests ## the integration and reliability tests with the server under valgrind
	@command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind"; exit 1; }
	rm -rf $(VALGRIND_LOGS) && mkdir -p $(VALGRIND_LOGS)
	SERVER=tests/valgrind_server.sh VALGRIND_LOGS=$(VALGRIND_LOGS) CK_TIMEOUT_MULTIPLIER=20 \
		tests/integration_tests
	SERVER=tests/valgrind_server.sh VALGRIND_LOGS=$(VALGRIND_LOGS) CK_TIMEOUT_MULTIPLIER=5 \
		CK_EXCLUDE_TAGS=many-threads tests/reliability_tests
	@reports=$$(find $(VALGRIND_LOGS) -name '*.log' | wc -l); \
	dirty=$$(find $(VALGRIND_LOGS) -name '*.log' -size +0 | wc -l); \
	echo "valgrind: $$reports servers checked, $$dirty with errors or leaks"; \
	if [ "$$dirty" -ne 0 ]; then cat $$(find $(VALGRIND_LOGS) -name '*.log' -size +0); exit 1; fi

# libFuzzer targets (fuzz/*.c), built with clang with AddressSanitizer and
# UndefinedBehaviorSanitizer. Each runs for FUZZ_SECONDS, starting from the
# seed corpus in fuzz/corpus/NAME (inputs that once crashed stay there, as
# regression tests); what it discovers goes to build/fuzz/, never into the
# repository. A crash stops make, and the input that caused it is saved as
# build/fuzz/NAME-crash-... .
FUZZ_TARGETS = request connection utf8
FUZZ_SECONDS ?= 60
FUZZ_BUILD    = build/fuzz
FUZZ_FLAGS    = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_MAX_LEN_request    = 9000
FUZZ_MAX_LEN_connection = 16384
FUZZ_MAX_LEN_utf8       = 1024

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/reference_utf8.h ws.c ws.h | deps
	@mkdir -p $(FUZZ_BUILD)
	clang -std=c11 $(WARNINGS) -pthread $(FUZZ_FLAGS) $(CRYPTO_CFLAGS) -o $@ $< ws.c $(CRYPTO_LIBS)

fuzz: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%) ## run each libFuzzer target for FUZZ_SECONDS (default 60)
	@for target in $(FUZZ_TARGETS); do \
	    echo "== fuzz_$$target for $(FUZZ_SECONDS) s"; \
	    mkdir -p $(FUZZ_BUILD)/corpus-$$target; \
	    case $$target in request) max=$(FUZZ_MAX_LEN_request);; \
	        connection) max=$(FUZZ_MAX_LEN_connection);; *) max=$(FUZZ_MAX_LEN_utf8);; esac; \
	    $(FUZZ_BUILD)/fuzz_$$target -max_total_time=$(FUZZ_SECONDS) -max_len=$$max \
	        -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/$$target- \
	        $(FUZZ_BUILD)/corpus-$$target fuzz/corpus/$$target \
	        > $(FUZZ_BUILD)/$$target.log 2>&1 || { tail -n 40 $(FUZZ_BUILD)/$$target.log; exit 1; }; \
	    grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' \
	        $(FUZZ_BUILD)/$$target.log; \
	    grep -E 'cov: [0-9]+' $(FUZZ_BUILD)/$$target.log | tail -n 1; \
	done

# Installs Debian packages ($(1)) unless the shell test $(2) passes. The
# command is printed before it runs; on a system without apt-get it is only
# printed, and make stops.
define install_if_missing
	@if $(2); then exit 0; fi; \
	sudo=; [ "$$(id -u)" = 0 ] || sudo="sudo "; \
	cmd="$${sudo}apt-get update && $${sudo}apt-get install -y $(1)"; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "Missing: $(1). On Debian or Ubuntu run: $$cmd"; \
	    exit 1; \
	fi; \
	echo "Installing what the build needs: $$cmd"; \
	sh -c "$$cmd"
endef

deps: ## install the libraries the build needs, if pkg-config cannot find them
	$(call install_if_missing,$(BUILD_PACKAGES),pkg-config --exists libcrypto check 2>/dev/null)

test-deps: ## install what the interoperability test needs, if it is missing
	$(call install_if_missing,$(TEST_PACKAGES),$(PYTHON) -c 'import websockets' 2>/dev/null)

SOURCES = server.c ws.c ws.h notifier.c notifier.h tests/*.c tests/*.h fuzz/*.c fuzz/*.h

lint: ## cppcheck and clang-tidy over the sources
	cppcheck --quiet --error-exitcode=1 --enable=warning,style,performance,portability \
		--inline-suppr --suppress=missingIncludeSystem --std=c11 -I. \
		--include=tests/cppcheck.h server.c ws.c notifier.c tests/*.c fuzz/*.c
	clang-tidy --quiet server.c ws.c notifier.c tests/*.c fuzz/*.c -- \
		-std=c11 -I. $(CRYPTO_CFLAGS) $(CHECK_CFLAGS)

format: ## apply .clang-format to every source
	clang-format -i $(SOURCES)

format-check: ## fail if a source is not formatted
	clang-format --dry-run --Werror $(SOURCES)

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
	rm -f server *.o $(TEST_PROGRAMS) bench/loadgen bench/peers/tcp_echo

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
		awk -F':.*## ' '{ printf "  make %-13s %s\n", $$1, $$2 }'
