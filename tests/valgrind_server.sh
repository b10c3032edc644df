#!/bin/sh
# Runs the real server under valgrind, for "make valgrind": the test fixture
# starts this script instead of ./server (SERVER=tests/valgrind_server.sh).
# Each server writes its report to $VALGRIND_LOGS/PID.log; only errors and
# definite leaks are reported, so an empty log is a clean run. (Until the
# server exits gracefully, it is stopped by SIGTERM, with its threads still
# running: their stacks are "possibly lost", which is not a leak.)
exec valgrind --quiet --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --log-file="${VALGRIND_LOGS:-.}/%p.log" \
    "${REAL_SERVER:-./server}" "$@"
