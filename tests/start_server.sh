# start_server.sh -- sourced by the shell tests: start_server SERVER ARGS...
# starts the server on a free loopback port, sets $port and $server_pid, and
# stops it by its pid when the test exits. A test may start several: each
# call sets $port anew, and every server started is stopped at the end.
start_server() {
    server_out=$(mktemp)
    "$@" --port 0 > "$server_out" &
    server_pid=$!
    server_pids="$server_pids $server_pid"
    server_outs="$server_outs $server_out"
    trap 'kill $server_pids 2>/dev/null; wait $server_pids 2>/dev/null; rm -f $server_outs' EXIT
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        grep -q Listening "$server_out" && break
        sleep 0.1
    done
    port=$(sed -n 's/.*:\([0-9]*\) .*/\1/p' "$server_out")
}
