#!/usr/bin/env python3
"""The server's documentation against the server: --help fits one screen and
names every option with its default, server.1 and the README document every
option, the man page renders cleanly, and make install / make uninstall honour
PREFIX and DESTDIR. Usage: python3 tests/test_docs.py ./server; prints
"N passed, N failed"."""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
results = []


def check(name, condition, detail=""):
    print(("PASS " if condition else "FAIL ") + name + ("" if condition else f": {detail}"))
    results.append(condition)


def main():
    server = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./server")
    help_text = subprocess.run([server, "--help"], capture_output=True, text=True).stdout
    lines = help_text.splitlines()
    check("--help fits one screen (24 lines of 80 columns)",
          len(lines) <= 24 and max(len(line) for line in lines) <= 80,
          f"{len(lines)} lines, the longest {max(len(line) for line in lines)} columns")
    options = re.findall(r"--([a-z-]+)", help_text)
    with open(os.path.join(ROOT, "server.c")) as source:
        declared = re.findall(r'\{"([a-z-]+)", (?:required|no)_argument', source.read())
    check("--help lists every option the server takes", set(declared) <= set(options),
          f"missing: {sorted(set(declared) - set(options))}")
    valued = [o for o in declared if f"--{o}=" in help_text]
    undefaulted = []
    for option in valued:
        # From the option to the next option (or the blank line after the list).
        segment = re.split(r"\n  -|\n\n", help_text.split(f"--{option}=", 1)[1])[0]
        if "default" not in segment:
            undefaulted.append(option)
    check("--help gives the default of every option that takes a value", not undefaulted,
          f"no default shown for {undefaulted}")
    with open(os.path.join(ROOT, "server.1")) as page:
        manual = page.read().replace("\\-", "-")
    check("server.1 documents every option", all(f"--{o}" in manual for o in declared),
          [o for o in declared if f"--{o}" not in manual])
    with open(os.path.join(ROOT, "README.md")) as readme:
        text = readme.read()
    check("the README shows every option", all(f"--{o}" in text for o in declared),
          [o for o in declared if f"--{o}" not in text])
    rendered = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z",
                               os.path.join(ROOT, "server.1")], capture_output=True, text=True)
    check("man ./server.1 renders without a warning", rendered.returncode == 0 and
          not rendered.stderr, rendered.stderr)
    with tempfile.TemporaryDirectory() as folder:
        started = subprocess.run([server, "--port", "0", "--client-page", folder],
                                 capture_output=True, text=True, timeout=10)
        check("a folder given as --client-page is refused at start, saying so",
              started.returncode == 1 and "not a regular file" in started.stderr,
              f"exit {started.returncode}, said: {started.stderr.strip()!r}")
    with tempfile.TemporaryDirectory() as destdir:
        make = ["make", "-s", "-C", ROOT, f"DESTDIR={destdir}", "PREFIX=/opt/ws"]
        installed = subprocess.run(make + ["install"], capture_output=True, text=True)
        files = ["opt/ws/bin/server", "opt/ws/share/man/man1/server.1",
                 "opt/ws/share/websocket-echo/client.html"]
        present = [f for f in files if os.path.exists(os.path.join(destdir, f))]
        check("make install puts the server, server.1 and the page under DESTDIR/PREFIX",
              installed.returncode == 0 and present == files, installed.stderr or present)
        subprocess.run(make + ["uninstall"], capture_output=True, text=True)
        left = [f for f in files if os.path.exists(os.path.join(destdir, f))]
        check("make uninstall removes them", not left, left)
    print(f"{results.count(True)} passed, {results.count(False)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
