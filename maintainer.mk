# maintainer.mk -- targets for maintainers and CI, included by the Makefile.
#
# A student never needs these: they run the tests under the sanitizers and
# valgrind, fuzz, lint and format the sources, benchmark and stress the
# server, and show it behind nginx. CI (.ci/run) runs most of them. They use
# the Makefile's variables (CC, CFLAGS, PKG_CONFIG, ...) and its "deps",
# "check-deps" and "test-deps" targets.

.PHONY: sanitize valgrind fuzz lint format format-check bench bench-deps bench-smoke stress \
	demo-nginx

# A comma, for arguments of $(call) that contain one.
, := ,

BENCH_PACKAGES = nodejs npm
CLEAN_FILES   += bench/loadgen bench/peers/tcp_echo

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
	TIME_SCALE=3 $(PYTHON) tests/test_tls.py ./server
	$(PYTHON) tests/test_deflate.py ./server
endef

sanitize: | test-deps ## the tests under ASan+UBSan, then under TSan
	$(call run_sanitized,-fno-omit-frame-pointer -fsanitize=address$(,)undefined -fno-sanitize-recover=all)
	$(call run_sanitized,-fsanitize=thread)
	$(MAKE) --no-print-directory clean >/dev/null

# The integration and reliability tests, and the TLS and permessage-deflate
# suites, against the server running under valgrind (tests/valgrind_server.sh).
# Each server exits by itself on SIGTERM;
# valgrind's exit status fails the suite on any memory error or leak, and its
# report must be empty too. One case is left out: valgrind runs one thread at
# a time, so starting a thousand of them takes longer than the 2-second
# handshake timeout that test races against.
VALGRIND_LOGS = build/valgrind

valgrind: server tests/integration_tests tests/reliability_tests | test-deps ## the integration, reliability, TLS and deflate tests with the server under valgrind
	@command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind"; exit 1; }
	rm -rf $(VALGRIND_LOGS) && mkdir -p $(VALGRIND_LOGS)
	SERVER=tests/valgrind_server.sh VALGRIND_LOGS=$(VALGRIND_LOGS) CK_TIMEOUT_MULTIPLIER=20 \
		tests/integration_tests
	SERVER=tests/valgrind_server.sh VALGRIND_LOGS=$(VALGRIND_LOGS) CK_TIMEOUT_MULTIPLIER=5 \
		CK_EXCLUDE_TAGS=many-threads tests/reliability_tests
	TIME_SCALE=20 VALGRIND_LOGS=$(VALGRIND_LOGS) $(PYTHON) tests/test_tls.py tests/valgrind_server.sh
	VALGRIND_LOGS=$(VALGRIND_LOGS) $(PYTHON) tests/test_deflate.py tests/valgrind_server.sh
	@reports=$$(find $(VALGRIND_LOGS) -name '*.log' | wc -l); \
	dirty=$$(find $(VALGRIND_LOGS) -name '*.log' -size +0 | wc -l); \
	echo "valgrind: $$reports servers checked, $$dirty with errors or leaks"; \
	if [ "$$dirty" -ne 0 ]; then cat $$(find $(VALGRIND_LOGS) -name '*.log' -size +0); exit 1; fi

# libFuzzer targets (fuzz/*.c), built with clang with AddressSanitizer and
# UndefinedBehaviorSanitizer. Each runs for FUZZ_SECONDS, starting from the
# seed corpus in fuzz/corpus/NAME (inputs that once crashed stay there, as
# regression tests); what it discovers goes to build/fuzz/, never into the
# repository. A crash stops make, and the input that caused it is saved as
# build/fuzz/NAME-crash-... . A new target needs its name here, a
# FUZZ_MAX_LEN_NAME and a line in the "case" below.
FUZZ_TARGETS = request connection utf8 refusal extensions
FUZZ_SECONDS ?= 60
FUZZ_BUILD    = build/fuzz
FUZZ_FLAGS    = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_MAX_LEN_request    = 9000
FUZZ_MAX_LEN_connection = 16384
FUZZ_MAX_LEN_utf8       = 1024
FUZZ_MAX_LEN_refusal    = 4096
FUZZ_MAX_LEN_extensions = 4096

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/reference_utf8.h ws.c ws.h | deps
	@mkdir -p $(FUZZ_BUILD)
	clang -std=c11 $(WARNINGS) -pthread $(FUZZ_FLAGS) $(CRYPTO_CFLAGS) $(ZLIB_CFLAGS) -o $@ $< ws.c \
		$(WS_LIBS)

fuzz: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%) ## run each libFuzzer target for FUZZ_SECONDS (default 60)
	@for target in $(FUZZ_TARGETS); do \
	    echo "== fuzz_$$target for $(FUZZ_SECONDS) s"; \
	    mkdir -p $(FUZZ_BUILD)/corpus-$$target; \
	    case $$target in \
	        request) max=$(FUZZ_MAX_LEN_request);; \
	        connection) max=$(FUZZ_MAX_LEN_connection);; \
	        utf8) max=$(FUZZ_MAX_LEN_utf8);; \
	        refusal) max=$(FUZZ_MAX_LEN_refusal);; \
	        extensions) max=$(FUZZ_MAX_LEN_extensions);; \
	        *) echo "no FUZZ_MAX_LEN_$$target in maintainer.mk"; exit 1;; \
	    esac; \
	    $(FUZZ_BUILD)/fuzz_$$target -max_total_time=$(FUZZ_SECONDS) -max_len=$$max \
	        -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/$$target- \
	        $(FUZZ_BUILD)/corpus-$$target fuzz/corpus/$$target \
	        > $(FUZZ_BUILD)/$$target.log 2>&1 || { tail -n 40 $(FUZZ_BUILD)/$$target.log; exit 1; }; \
	    grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' \
	        $(FUZZ_BUILD)/$$target.log; \
	    grep -E 'cov: [0-9]+' $(FUZZ_BUILD)/$$target.log | tail -n 1; \
	done

SOURCES = server.c ws.c ws.h notifier.c notifier.h tests/*.c tests/*.h fuzz/*.c fuzz/*.h

lint: ## cppcheck and clang-tidy over the sources
	cppcheck --quiet --error-exitcode=1 --enable=warning,style,performance,portability \
		--inline-suppr --suppress=missingIncludeSystem --std=c11 -I. \
		--include=tests/cppcheck.h server.c ws.c notifier.c tests/*.c fuzz/*.c
	clang-tidy --quiet server.c ws.c notifier.c tests/*.c fuzz/*.c -- \
		-std=c11 -I. $(CRYPTO_CFLAGS) $(ZLIB_CFLAGS) $(CHECK_CFLAGS)
	@# struct ws is ordered so that it needs no padding: keep it so.
	@if $(CC) -std=c11 -Wpadded -fsyntax-only $(CRYPTO_CFLAGS) $(ZLIB_CFLAGS) ws.c 2>&1 | grep '^ws\.c:'; then \
		echo "lint: struct ws has padding (see the comment above it)"; exit 1; fi

format: ## apply .clang-format to every source
	clang-format -i $(SOURCES)

format-check: ## fail if a source is not formatted
	clang-format --dry-run --Werror $(SOURCES)

bench/loadgen: bench/loadgen.c ws.o ws.h | deps
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ bench/loadgen.c ws.o $(WS_LIBS)

bench/peers/tcp_echo: bench/peers/tcp_echo.c
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $<

# The compressed scenarios (and their smoke) use Node's ws as the client
# (bench/deflate_client.js): run.py installs ws into bench/node/ with npm.
bench: server bench/loadgen bench/peers/tcp_echo | test-deps bench-deps ## ours vs Node ws, Python websockets, TCP echo; also compressed
	$(PYTHON) bench/run.py

bench-deps: ## install Node.js and npm for the benchmark's Node ws peer, if missing
	$(call install_if_missing,$(BENCH_PACKAGES),command -v node >/dev/null && command -v npm >/dev/null)

bench-smoke: server bench/loadgen | bench-deps ## every benchmark mode for a second, against our server only
	$(PYTHON) bench/run.py --smoke

stress: server bench/loadgen ## 1,000 clients x 1,000 messages, 100 misbehaving, memory and exit checked
	$(PYTHON) tests/stress.py

demo-nginx: server | test-deps ## two servers behind nginx with TLS: wss://localhost:8443 (Ctrl+C stops)
	$(PYTHON) tests/nginx_demo.py --demo
