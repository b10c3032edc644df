#!/usr/bin/env python3
"""wss://: the server with --tls-cert and --tls-key, against clients nobody
here wrote (Python's websockets and ssl modules, Node's ws, curl) and
against clients that misbehave during the TLS handshake.

The test makes its own certificate authority and a certificate for
localhost signed by it (with the openssl command), so that every client
checks the server's certificate for real, as a browser would.

Usage: python3 tests/test_tls.py [./server]; prints "N passed, N failed".
"""
import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import warnings

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Under valgrind ("make valgrind") everything is some 20 times slower: the
# time limits below are multiplied by TIME_SCALE.
TIME_SCALE = float(os.environ.get("TIME_SCALE", "1"))
TIMEOUT = 10 * TIME_SCALE
results = {"passed": 0, "failed": 0, "skipped": 0}
exit_statuses = []


def check(name, ok, expected, got):
    """One result line: PASS, or FAIL with what was expected and what came."""
    if ok:
        results["passed"] += 1
        print(f"PASS {name}")
    else:
        results["failed"] += 1
        print(f"FAIL {name}\n    expected: {expected}\n    got:      {got}")


def openssl(*arguments):
    subprocess.run(["openssl", *arguments], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_certificates(folder):
    """A certificate authority, and a certificate for localhost and
    127.0.0.1 that it signs. Returns (ca, certificate, key, other_key)."""
    ca_key, ca = f"{folder}/ca.key", f"{folder}/ca.pem"
    key, request, certificate = f"{folder}/key.pem", f"{folder}/server.csr", f"{folder}/cert.pem"
    extensions = f"{folder}/san.cnf"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=Test CA", "-keyout", ca_key,
            "-out", ca)
    openssl("req", *ec, "-subj", "/CN=localhost", "-keyout", key, "-out", request)
    with open(extensions, "w") as out:
        out.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "2", "-extfile", extensions, "-out", certificate)
    other_key = f"{folder}/other.key"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-out", other_key)
    return ca, certificate, key, other_key


class Server:
    """The server on a free loopback port, its log in a file; stopped by its
    pid."""

    def __init__(self, server, certificate, key, *options):
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [server, "--host", "127.0.0.1", "--port", "0", "--tls-cert", certificate,
             "--tls-key", key, *options],
            stdout=subprocess.PIPE, stderr=self.log)
        line = self.process.stdout.readline().decode()  # "Listening on wss://127.0.0.1:PORT"
        if "wss://" not in line:
            self.stop()
            raise RuntimeError(f"the server did not start: {line!r} {self.stderr()!r}")
        self.port = int(line.rsplit(":", 1)[1].split()[0])

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_for_log(self, text, seconds=5):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if text in self.stderr():
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        exit_statuses.append(self.process.returncode)
        return self.process.returncode


def client_context(ca):
    context = ssl.create_default_context(cafile=ca)
    return context


async def echo_over_wss(port, ca):
    """Text, binary, 1 MiB and a fragmented message, each compared."""
    uri = f"wss://localhost:{port}/"
    got = []
    async with websockets.connect(uri, ssl=client_context(ca), max_size=None,
                                  open_timeout=TIMEOUT) as ws:
        await ws.send("Hello over TLS, κόσμε")
        got.append(await ws.recv() == "Hello over TLS, κόσμε")
        payload = os.urandom(1024 * 1024)
        await ws.send(payload)
        got.append(await ws.recv() == payload)
        await ws.send(iter(["frag", "ment", "ed"]))
        got.append(await ws.recv() == "fragmented")
        await ws.close(1000, "bye")
        got.append(ws.close_code == 1000)
    return got


def raw_tls_socket(port, ca):
    context = client_context(ca)
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return context.wrap_socket(raw, server_hostname="localhost")


def upgrade(sock):
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            break
        response += chunk
    return response


def read_frame(sock):
    header = b""
    while len(header) < 2:
        chunk = sock.recv(2 - len(header))
        if not chunk:
            return None, b""
        header += chunk
    length = header[1] & 0x7F
    payload = b""
    while len(payload) < length:
        payload += sock.recv(length - len(payload))
    return header[0], payload


def seconds_until_closed(sock, limit):
    """Reads until the server closes the connection; returns how long that
    took, or None if it stayed open for limit seconds."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except (socket.timeout, TimeoutError):
        return None
    except OSError:
        pass  # a reset is a close too
    return time.monotonic() - start


def test_clients_nobody_here_wrote(server, certificate, key, ca):
    s = Server(server, certificate, key, "--permessage-deflate")
    try:
        try:
            got = asyncio.run(echo_over_wss(s.port, ca))
        except Exception as error:  # the handshake, or the certificate check, failed
            got = [repr(error)]
        check("websockets over wss:// (compressed: it offers permessage-deflate), checking the"
              " certificate: text, 1 MiB, fragments, close",
              got == [True] * 4, "[True, True, True, True] (each echo equal, close 1000)", got)
        check("the log says the connection was opened over TLS",
              s.wait_for_log(" over TLSv1."), "a line 'open ... over TLSv1.x CIPHER'",
              s.stderr().strip().splitlines()[-3:])

        with raw_tls_socket(s.port, ca) as sock:
            response = upgrade(sock)
            version = sock.version()
        check("the server speaks TLS 1.2 or newer and answers 101 through it",
              response.startswith(b"HTTP/1.1 101 ") and version in ("TLSv1.2", "TLSv1.3"),
              "HTTP/1.1 101 over TLSv1.2 or TLSv1.3", (response[:40], version))

        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            old.maximum_version = ssl.TLSVersion.TLSv1_1
            old.minimum_version = ssl.TLSVersion.TLSv1
        old.set_ciphers("ALL:@SECLEVEL=0")
        outcome = "handshake completed"
        try:
            with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as raw:
                with old.wrap_socket(raw, server_hostname="localhost") as sock:
                    outcome = f"handshake completed with {sock.version()}"
        except (ssl.SSLError, OSError) as error:
            outcome = f"refused: {error}"
        # The server must be the one that says no (a "protocol version" alert),
        # not the client's own library refusing to try.
        check("a client that speaks only TLS 1.1 or older is refused by the server",
              outcome.startswith("refused") and "PROTOCOL_VERSION" in outcome.upper(),
              "the handshake fails with the server's 'protocol version' alert", outcome)

        with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = sock.recv(4096).decode(errors="replace")
        check("a plain HTTP (ws://) request to the TLS port gets 400 saying to use wss://",
              answer.startswith("HTTP/1.1 400 ") and "wss://" in answer,
              "HTTP/1.1 400 ... use a wss:// (or https://) URL", answer[:120])
        check("... and it is logged",
              s.wait_for_log("400 this port speaks TLS"), "a 'refuse ... 400' line",
              s.stderr().strip().splitlines()[-2:])

        curl = shutil.which("curl")
        if curl is None:
            print("SKIPPED curl over https:// (curl is not installed)")
            results["skipped"] += 1
        else:
            completed = subprocess.run(
                [curl, "-sS", "-i", "--max-time", "5", "--cacert", ca,
                 "-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
                 "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 "-H", "Sec-WebSocket-Version: 13", f"https://localhost:{s.port}/"],
                capture_output=True, text=True)
            out = completed.stdout.replace("\r", "")
            check("curl, checking the certificate, gets 101 with the RFC's accept key",
                  out.startswith("HTTP/1.1 101") and "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in out,
                  "HTTP/1.1 101 ... Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                  (out or completed.stderr)[:200])
        node_checks(s.port, ca)
    finally:
        s.stop()


def node_checks(port, ca):
    node = shutil.which("node")
    modules = os.path.join(HERE, "node", "node_modules")
    if node is None or not os.path.isdir(os.path.join(modules, "ws")):
        print("SKIPPED Node's ws over wss:// (node or tests/node/node_modules/ws missing:"
              " tests/interop_node.sh installs it)")
        results["skipped"] += 1
        return
    # The server has --permessage-deflate: the suite's compressed cases run
    # over TLS too, against the same port.
    completed = subprocess.run([node, os.path.join(HERE, "interop_node.js"), str(port), str(port)],
                               capture_output=True, text=True, timeout=120,
                               env={**os.environ, "NODE_PATH": modules, "WS_CA_FILE": ca})
    last = completed.stdout.strip().splitlines()[-1:] or [completed.stderr[-300:]]
    ok = completed.returncode == 0 and last[0].endswith(" 0 failed")
    check("Node's ws over wss://, checking the certificate: its whole interop suite",
          ok, "'N passed, 0 failed'", completed.stdout[-600:] or completed.stderr[-300:])


def test_handshake_limits(server, certificate, key, ca):
    timeout = max(1, round(TIME_SCALE))
    s = Server(server, certificate, key, "--handshake-timeout", str(timeout))
    try:
        silent = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT)
        stalled = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT)
        # The first bytes of a ClientHello record (type 22, TLS 1.0 framing,
        # a length of 512), then nothing more.
        stalled.sendall(bytes([22, 3, 1, 2, 0, 1, 0, 1, 252]))
        start = time.monotonic()
        # Meanwhile, another client is served at once.
        try:
            got = asyncio.run(echo_over_wss(s.port, ca))
        except Exception as error:
            got = [repr(error)]
        served_in = time.monotonic() - start
        check("while two clients stall their TLS handshakes, another is served",
              got == [True] * 4 and served_in < timeout, f"every echo within {timeout} s",
              (got, round(served_in, 2)))
        silent_after = seconds_until_closed(silent, 5 * timeout)
        stalled_after = seconds_until_closed(stalled, 5 * timeout)
        check("a client that connects and says nothing is cut off at --handshake-timeout",
              silent_after is not None and silent_after < 3 * timeout,
              f"closed within about {timeout} s", silent_after)
        check("a client that stops in the middle of its ClientHello is cut off too",
              stalled_after is not None and stalled_after < 3 * timeout,
              f"closed within about {timeout} s", stalled_after)
        check("... and both are logged as TLS handshakes that did not complete in time",
              s.wait_for_log("TLS handshake failed: the TLS handshake did not complete in time")
              and s.stderr().count("did not complete in time") >= 2,
              "two 'TLS handshake failed: ... did not complete in time' lines",
              s.stderr().strip().splitlines()[-3:])
        silent.close()
        stalled.close()
    finally:
        s.stop()


async def close_code_after(port, ca, first, then):
    """Opens wss://, has the text first echoed, awaits then(ws) (which should
    make the server close), and returns the close code the server sent."""
    async with websockets.connect(f"wss://localhost:{port}/", ssl=client_context(ca),
                                  open_timeout=TIMEOUT) as ws:
        await ws.send(first)
        await ws.recv()
        await then(ws)
        try:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        except websockets.ConnectionClosed:
            pass
        return ws.close_code


def test_behaviour_over_tls(server, certificate, key, ca):
    """Limits, keep-alive, --trace and shutdown work as they do over TCP."""
    interval = max(1, round(TIME_SCALE))
    s = Server(server, certificate, key, "--max-message", "1000", "--ping-interval",
               str(interval), "--trace")
    try:
        with raw_tls_socket(s.port, ca) as sock:
            upgrade(sock)
            start = time.monotonic()
            opcode, payload = read_frame(sock)
            waited = time.monotonic() - start
            check("keep-alive: a silent client is pinged after --ping-interval",
                  opcode == 0x89 and 0.5 * interval < waited < 3 * interval,
                  f"a ping (0x89) after about {interval} s",
                  (opcode, round(waited, 2)))

        async def send_too_much(ws):
            await ws.send("x" * 2000)

        code = asyncio.run(close_code_after(s.port, ca, "traced", send_too_much))
        check("--max-message: a larger message is closed with 1009", code == 1009, 1009, code)
        check("--trace shows the frames of a TLS connection",
              s.wait_for_log('length=6 (7-bit) "traced"'),
              "a '<< FIN=1 ... length=6 (7-bit) \"traced\"' line",
              s.stderr().strip().splitlines()[-3:])

        async def stop_the_server(ws):
            s.process.send_signal(signal.SIGTERM)

        code = asyncio.run(close_code_after(s.port, ca, "before the stop", stop_the_server))
        check("shutdown: an open wss:// client is closed with 1001", code == 1001, 1001, code)
    finally:
        s.stop()


def start_error(server, *options):
    completed = subprocess.run([server, "--port", "0", *options], capture_output=True,
                               text=True, timeout=TIMEOUT * 3)
    return completed.returncode, completed.stderr.strip()


def test_start_errors(server, certificate, key, other_key):
    status, said = start_error(server, "--tls-cert", "/nonexistent.pem", "--tls-key", key)
    check("a certificate that cannot be read stops the server at start, saying why",
          status == 1 and "cannot load the certificate '/nonexistent.pem'" in said,
          "exit 1, \"cannot load the certificate '/nonexistent.pem': ...\"", (status, said))
    status, said = start_error(server, "--tls-cert", certificate, "--tls-key", other_key)
    check("a key that does not match the certificate stops the server at start",
          status == 1 and "mismatch" in said, "exit 1, '... key values mismatch'",
          (status, said))
    status, said = start_error(server, "--tls-cert", certificate)
    check("--tls-cert without --tls-key is a usage error", status == 2 and "--tls-key" in said,
          "exit 2, naming --tls-key", (status, said))


def main():
    server = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "server")
    if shutil.which("openssl") is None:
        print("SKIPPED: the openssl command is missing (apt-get install openssl)")
        print("0 passed, 0 failed, 1 skipped")
        return 0
    folder = tempfile.mkdtemp(prefix="ws-tls-test-")
    try:
        ca, certificate, key, other_key = make_certificates(folder)
        test_clients_nobody_here_wrote(server, certificate, key, ca)
        test_handshake_limits(server, certificate, key, ca)
        test_behaviour_over_tls(server, certificate, key, ca)
        test_start_errors(server, certificate, key, other_key)
        check("every server started exited with status 0 on SIGTERM (under valgrind: no"
              " error, no leak)", exit_statuses == [0] * len(exit_statuses),
              "[0, 0, 0]", exit_statuses)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    skipped = f", {results['skipped']} skipped" if results["skipped"] else ""
    print(f"{results['passed']} passed, {results['failed']} failed{skipped}")
    return 0 if results["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
