#!/bin/sh
# Runs every test suite, even after one fails, and ends with one line that
# adds them up: "total: N passed, N failed". Called by "make test".
PYTHON=${PYTHON:-python3}
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Runs one suite, shows its output, and adds its counts to the totals.
run() {
    echo "== $*"
    "$@" > "$log" 2>&1
    status=$?
    cat "$log"
    # Check ends with "100%: Checks: 86, Failures: 0, Errors: 0";
    # the Python interop test with "8 passed, 0 failed".
    counts=$(sed -n \
        -e 's/.*Checks: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2 \3/p' \
        -e 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2 0/p' "$log" | tail -n 1)
    if [ -z "$counts" ]; then
        echo "(no result line: counted as one failure)"
        failed=$((failed + 1))
        return
    fi
    set -- $counts
    passed=$((passed + $1 - $2 - $3))
    failed=$((failed + $2 + $3))
    if [ "$status" -ne 0 ] && [ "$2" -eq 0 ] && [ "$3" -eq 0 ]; then
        echo "(exit status $status with no failed test: counted as one failure)"
        failed=$((failed + 1))
    fi
}

run tests/unit_tests
run tests/integration_tests
run tests/reliability_tests
run tests/conformance_tests
run "$PYTHON" tests/interop_websockets.py ./server
run "$PYTHON" tests/test_trace.py ./server

echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
