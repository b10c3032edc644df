#!/bin/sh
# Proves that building the server needs only a C compiler, pkg-config and
# libcrypto, and that only the tests need Check (the unit-test library).
#
#   sh tests/test_build.sh [PROJECT]   PROJECT: the folder with the Makefile (default: ..)
#
# It copies the Makefile, maintainer.mk and the C sources to a temporary
# folder and runs make there with three stand-ins first on PATH: a pkg-config
# that says Check is not installed (and asks the real one about everything
# else), and an apt-get and a sudo that write down how they were called and
# never install anything. Prints "PASS name" or "FAIL name: why" per check,
# and ends with "N passed, N failed".

project=${1:-$(dirname "$0")/..}
passed=0
failed=0

pass() {
    echo "PASS $1"
    passed=$((passed + 1))
}

# fail NAME WHY [LOG]: one line, then the end of LOG (what make said), indented.
fail() {
    echo "FAIL $1: $2"
    [ -n "$3" ] && tail -n 8 "$3" | sed 's/^/    /'
    failed=$((failed + 1))
}

real_pkg_config=$(command -v pkg-config) || {
    echo "SKIPPED: pkg-config is missing (the build itself needs it)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
}

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
bin=$tmp/bin
calls=$tmp/calls
mkdir "$bin" "$tmp/project" "$tmp/project/tests"

# The sources, without anything already built.
cp "$project"/Makefile "$project"/*.c "$project"/*.h "$tmp/project/" || exit 1
[ -f "$project/maintainer.mk" ] && cp "$project/maintainer.mk" "$tmp/project/"
cp "$project"/tests/*.c "$project"/tests/*.h "$tmp/project/tests/" || exit 1

cat > "$bin/pkg-config" <<EOF
#!/bin/sh
# Check is not installed on this machine; libcrypto is, as the real pkg-config says.
for arg in "\$@"; do
    if [ "\$arg" = check ]; then
        echo "Package check was not found in the pkg-config search path." >&2
        exit 1
    fi
done
exec "$real_pkg_config" "\$@"
EOF

# "apt-get update" succeeds (it changes nothing), so that the log shows what
# "apt-get install" was asked for; "apt-get install" always fails.
cat > "$bin/apt-get" <<EOF
#!/bin/sh
echo "apt-get \$*" >> "$calls"
[ "\$1" = update ]
EOF

# The Makefile runs "sudo apt-get ..." when not root: that reaches the fake
# apt-get above, and nothing else is run.
cat > "$bin/sudo" <<EOF
#!/bin/sh
echo "sudo \$*" >> "$calls"
[ "\$1" = apt-get ] || exit 1
shift
exec "$bin/apt-get" "\$@"
EOF
chmod +x "$bin/pkg-config" "$bin/apt-get" "$bin/sudo"

# make in the copy, with the stand-ins; what make prints goes to $tmp/$1.log.
# Variables from a "make test" that called us are not passed on.
run_make() {
    log=$tmp/$1.log
    : > "$calls"
    (unset MAKEFLAGS MFLAGS MAKELEVEL
     cd "$tmp/project" &&
         PATH="$bin:$PATH" make --no-print-directory PKG_CONFIG="$bin/pkg-config" "$1") \
        > "$log" 2>&1
}

# (a) The server builds, and runs, without Check and without apt-get.
run_make server
status=$?
if [ "$status" -eq 0 ] && [ -x "$tmp/project/server" ]; then
    pass "make server builds with Check missing"
else
    fail "make server builds with Check missing" "make exited with status $status" "$log"
fi
if [ -s "$calls" ]; then
    fail "make server never runs apt-get or sudo" "it ran: $(head -n 1 "$calls")"
else
    pass "make server never runs apt-get or sudo"
fi
if [ -x "$tmp/project/server" ] && "$tmp/project/server" --version > /dev/null 2>&1; then
    pass "the server it built runs (./server --version)"
else
    fail "the server it built runs (./server --version)" "no ./server, or it failed"
fi

# (b) The test programs do need Check: make tries to install it, and stops
# when it cannot.
run_make test-programs
status=$?
if grep 'apt-get install' "$calls" 2>/dev/null | grep -qw check; then
    pass "make test-programs tries to install Check"
else
    fail "make test-programs tries to install Check" \
        "expected a call of apt-get install with check, got: $(tr '\n' ';' < "$calls")" "$log"
fi
if [ "$status" -ne 0 ] && [ ! -e "$tmp/project/tests/unit_tests" ]; then
    pass "make test-programs stops when Check cannot be installed"
else
    fail "make test-programs stops when Check cannot be installed" \
        "make exited with status $status" "$log"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
