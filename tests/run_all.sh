#!/bin/sh
# Runs every test suite, even after one fails, and ends with one line that
# adds them up: "total: N passed, N failed, N skipped". Called by "make test".
# A suite whose tool is missing (Chromium, Node, curl) says "SKIPPED: why";
# it is counted as skipped, never as passed.
PYTHON=${PYTHON:-python3}
passed=0
failed=0
skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Runs one suite, shows its output, and adds its counts to the totals.
run() {
    echo "== $*"
    "$@" > "$log" 2>&1
    status=$?
    cat "$log"
    # Check ends with "100%: Checks: 86, Failures: 0, Errors: 0"; the other
    # suites with "8 passed, 0 failed" (and ", 1 skipped" when they could not run).
    counts=$(sed -n \
        -e 's/.*Checks: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2 \3 0/p' \
        -e 's/^\([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1 \2 0 \3/p' \
        -e 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2 0 0/p' "$log" | tail -n 1)
    if [ -z "$counts" ]; then
        echo "(no result line: counted as one failure)"
        failed=$((failed + 1))
        return
    fi
    set -- $counts
    passed=$((passed + $1 - $2 - $3))
    failed=$((failed + $2 + $3))
    skipped=$((skipped + $4))
    if [ "$status" -ne 0 ] && [ "$2" -eq 0 ] && [ "$3" -eq 0 ]; then
        echo "(exit status $status with no failed test: counted as one failure)"
        failed=$((failed + 1))
    fi
}

run tests/unit_tests
run tests/integration_tests
run tests/reliability_tests
run tests/conformance_tests
run "$PYTHON" tests/test_trace.py ./server
run "$PYTHON" tests/test_docs.py ./server
# permessage-deflate (RFC 7692): Autobahn-style sections 12 and 13, a zip bomb.
run "$PYTHON" tests/test_deflate.py ./server
# The server builds without Check; only the tests need it.
run sh tests/test_build.sh
# Clients nobody here wrote.
run "$PYTHON" tests/interop_websockets.py ./server
run sh tests/interop_node.sh ./server
run sh tests/interop_curl.sh ./server
run "$PYTHON" tests/test_browser.py ./server
# wss://: TLS with a certificate authority the test makes.
run "$PYTHON" tests/test_tls.py ./server
# Behind a real proxy: nginx, TLS, two servers.
run "$PYTHON" tests/nginx_demo.py

echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
