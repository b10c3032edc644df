#!/bin/sh
# Interoperability with Node's ws, installed from npm into tests/node/ (not
# into the system) the first time. Skipped, with the reason, when node or npm
# is missing or npm cannot reach its registry. Usage: tests/interop_node.sh ./server
server=${1:-./server}
here=$(dirname "$0")
skip() {
    echo "SKIPPED: $1"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
}
command -v node >/dev/null 2>&1 || skip "node is not installed (apt-get install nodejs npm)"
if [ ! -d "$here/node/node_modules/ws" ]; then
    command -v npm >/dev/null 2>&1 || skip "npm is not installed (apt-get install npm)"
    npm install --prefix "$here/node" --no-audit --no-fund --silent ws@8 >/dev/null 2>&1 ||
        skip "npm could not install ws (no registry?)"
fi
out=$(mktemp)
"$server" --port 0 --quiet > "$out" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$out"' EXIT
for _ in 1 2 3 4 5 6 7 8 9 10; do
    grep -q Listening "$out" && break
    sleep 0.1
done
port=$(sed -n 's/.*:\([0-9]*\) .*/\1/p' "$out")
NODE_PATH="$here/node/node_modules" node "$here/interop_node.js" "$port"
