# start_server.sh -- sourced by the shell tests: start_server SERVER ARGS...
# starts the server on a free loopback port, sets $port and $server_pid, and
# stops it by its pid when the test exits.
start_server() {
    server_out=$(mktemp)
    "$@" --port 0 > "$server_out" &
    server_pid=$!
    trap 'kill $server_pid 2>/dev/null; wait $server_pid 2>/dev/null; rm -f "$server_out"' EXIT
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        grep -q Listening "$server_out" && break
        sleep 0.1
    done
    port=$(sed -n 's/.*:\([0-9]*\) .*/\1/p' "$server_out")
}
