#!/bin/sh
# Runs the real server under valgrind, for "make valgrind": the test fixture
# starts this script instead of ./server (SERVER=tests/valgrind_server.sh).
# The server exits by itself on SIGTERM (graceful shutdown), and valgrind
# then checks for leaks: any memory error, or any block definitely lost
# (directly or through another lost block), makes it exit with status 1,
# which the fixture reports as a server that did not exit cleanly. Each
# server's report goes to $VALGRIND_LOGS/PID.log.
#
# "Possibly lost" blocks are not counted: the one such block these runs show
# is glibc's thread-local storage table (allocate_dtv), which glibc keeps with
# the stack of a finished thread for the next thread to reuse, pointing into
# it from the cached stack. --max-threads: one test holds a thousand clients.
exec valgrind --quiet --max-threads=1200 --leak-check=full \
    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=1 --log-file="${VALGRIND_LOGS:-.}/%p.log" \
    "${REAL_SERVER:-./server}" "$@"
