#!/usr/bin/env python3
"""Two echo servers behind nginx, which ends TLS: deploy/nginx.conf for real.

    python3 tests/nginx_demo.py          the test (make test): wss:// clients
                                         echo through nginx, and new
                                         connections reach both servers
    python3 tests/nginx_demo.py --demo   make demo-nginx: the same set-up, left
                                         running until Ctrl+C, with the client
                                         page at https://localhost:PORT/

It makes a self-signed certificate with openssl and puts everything it makes
(configuration, logs, certificate) in build/nginx/. Every process listens on
127.0.0.1 only and is stopped by its pid. Skipped, with the reason, when nginx,
openssl or Python's websockets is missing.
"""
import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = os.path.join(ROOT, "build", "nginx")
CONNECTIONS = 6


def skip(reason):
    print(f"SKIPPED: {reason}")
    print("0 passed, 0 failed, 1 skipped")
    sys.exit(0)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_certificate():
    """A self-signed certificate for localhost and 127.0.0.1."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", os.path.join(PREFIX, "key.pem"),
                    "-out", os.path.join(PREFIX, "cert.pem")],
                   check=True, capture_output=True)


def start_server(number, extra):
    log = open(os.path.join(PREFIX, f"server{number}.log"), "w")
    process = subprocess.Popen([os.path.join(ROOT, "server"), "--port", "0", *extra],
                               stdout=subprocess.PIPE, stderr=log)
    port = int(process.stdout.readline().decode().rsplit(":", 1)[1].split()[0])
    return process, port


def start_nginx(port, server_ports):
    with open(os.path.join(ROOT, "deploy", "nginx.conf")) as template:
        config = template.read()
    for name, value in [("@PREFIX@", PREFIX), ("@PORT@", port),
                        ("@PORT1@", server_ports[0]), ("@PORT2@", server_ports[1])]:
        config = config.replace(name, str(value))
    path = os.path.join(PREFIX, "nginx.conf")
    with open(path, "w") as out:
        out.write(config)
    process = subprocess.Popen(["nginx", "-p", PREFIX, "-c", path, "-g", "daemon off;"],
                               stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError("nginx did not start: " + process.stderr.read().decode())
            time.sleep(0.05)
    raise RuntimeError("nginx did not start listening")


async def echo_through(port, number):
    import websockets
    context = ssl.create_default_context(cafile=os.path.join(PREFIX, "cert.pem"))
    async with websockets.connect(f"wss://localhost:{port}/", ssl=context) as ws:
        text = f"hello through nginx, connection {number}"
        await ws.send(text)
        assert await ws.recv() == text
        payload = bytes(range(256)) * 1024  # 256 KiB of binary
        await ws.send(payload)
        assert await ws.recv() == payload
        await ws.close(1000, "done")
        assert ws.close_code == 1000, ws.close_code


def opens_in(number):
    with open(os.path.join(PREFIX, f"server{number}.log")) as log:
        return sum(1 for line in log if " open " in line)


def check(name, condition, detail):
    print(("PASS " if condition else "FAIL ") + name + ("" if condition else f": {detail}"))
    return condition


def main():
    demo = "--demo" in sys.argv
    for tool in ["nginx", "openssl"]:
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            skip(f"{tool} is not installed (apt-get install {tool})")
    try:
        import websockets  # noqa: F401
    except ImportError:
        skip("Python's websockets is not installed (apt-get install python3-websockets)")
    os.environ["PATH"] += os.pathsep + "/usr/sbin"
    shutil.rmtree(PREFIX, ignore_errors=True)
    os.makedirs(PREFIX)
    make_certificate()
    extra = ["--client-page", os.path.join(ROOT, "web", "client.html")] if demo else []
    servers = [start_server(1, extra), start_server(2, extra)]
    port = 8443 if demo else free_port()
    nginx = None
    results = []
    try:
        nginx = start_nginx(port, [servers[0][1], servers[1][1]])
        if demo:
            print(f"nginx: https://localhost:{port}/ (the client page) and wss://localhost:{port}/,"
                  f" in front of ws://127.0.0.1:{servers[0][1]} and ws://127.0.0.1:{servers[1][1]}")
            print(f"The certificate is self-signed: accept it in the browser, or use "
                  f"{PREFIX}/cert.pem. Logs: {PREFIX}/. Ctrl+C stops everything.")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
            return 0
        failures = []
        for number in range(CONNECTIONS):
            try:
                asyncio.run(echo_through(port, number))
            except Exception as error:  # noqa: BLE001 (reported below)
                failures.append(f"connection {number}: {error!r}")
        results.append(check(f"{CONNECTIONS} wss:// clients echo text and 256 KiB through nginx",
                             not failures, failures))
        time.sleep(0.2)  # the servers log a connection when it has closed
        counts = [opens_in(1), opens_in(2)]
        results.append(check("new connections are spread across both servers",
                             sum(counts) == CONNECTIONS and min(counts) > 0,
                             f"connections per server: {counts}"))
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(timeout=10)
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
    print(f"{results.count(True)} passed, {results.count(False)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
