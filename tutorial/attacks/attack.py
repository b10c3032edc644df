#!/usr/bin/env python3
"""The attacks and faults of the chapters from "The slow client" to "Going away",
each a few lines, against a server on 127.0.0.1. Run one against the core server
(before those chapters), then against the step that fixes it:

    python3 tutorial/attacks/attack.py slowloris --port 5175 --pid SERVER_PID
    python3 tutorial/attacks/attack.py silent --port 5175 --pid SERVER_PID
    python3 tutorial/attacks/attack.py huge-frame --port 5175
    python3 tutorial/attacks/attack.py other-origin --port 5175
    python3 tutorial/attacks/attack.py stop --port 5175 --pid SERVER_PID

Only Python's standard library; every socket has a timeout, so each attack
ends by itself.
"""
import argparse
import os
import signal
import socket
import struct
import time

REQUEST = ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n{extra}\r\n")


def threads_of(pid):
    """How many threads the server has, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])


def open_websocket(port, extra=""):
    """Connects and completes the handshake; returns the socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(REQUEST.format(extra=extra).encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    return sock, response.split(b"\r\n")[0].decode()


def read_frame_and_fin(sock):
    """(fin, opcode, payload) of the server's next frame; None if it hung up."""
    try:
        header = sock.recv(2, socket.MSG_WAITALL)
        if len(header) < 2:
            return None
        length = header[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
        payload = sock.recv(length, socket.MSG_WAITALL) if length else b""
        return bool(header[0] & 0x80), header[0] & 0x0F, payload
    except ConnectionResetError:
        return None


def read_frame(sock):
    """(opcode, payload) of the server's next frame; None if it hung up."""
    frame = read_frame_and_fin(sock)
    return None if frame is None else frame[1:]


def read_message(sock):
    """(opcode, payload) of the server's next message, however many frames it
    came back in, or of its next close frame; None if it hung up. The server
    echoes what has arrived: a message whose frame was split between two reads
    comes back as two frames, and counts once."""
    while True:
        frame = read_frame_and_fin(sock)
        if frame is None:
            return None
        fin, opcode, payload = frame
        if opcode <= 8:
            break  # data or close; pings and pongs are skipped
    while not fin and opcode != 8:
        frame = read_frame_and_fin(sock)
        if frame is None:
            return None
        if frame[1] >= 8:
            continue  # a control frame between two frames of the message
        fin, _, more = frame
        payload += more
    return opcode, payload


def slowloris(port, pid):
    clients = []
    for i in range(200):  # 200 clients that never finish their request
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        clients.append(sock)
    for second in range(0, 16, 3):
        print(f"after {second:2d} s: the server has {threads_of(pid)} threads")
        for sock in clients:
            try:
                sock.send(b"X")  # one more byte of a header that never ends
            except OSError:
                pass
        time.sleep(3)


def silent(port, pid):
    sock, status = open_websocket(port)
    print(f"{status}; now we say nothing, and never answer")
    start = time.time()
    sock.settimeout(90)
    while True:
        try:
            frame = read_frame(sock)
        except socket.timeout:
            frame = "still open"
        print(f"after {time.time() - start:4.1f} s: {frame}")
        if frame is None or frame == "still open" or frame[0] == 8:
            break


def huge_frame(port, pid):
    sock, status = open_websocket(port)
    # A binary frame whose header says 2^62 bytes follow (RFC 6455 §5.2 allows
    # up to 2^63 - 1); we send none of them.
    sock.sendall(struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 62) + b"\x00\x00\x00\x00")
    sock.settimeout(5)
    try:
        print("the server answers:", read_frame(sock))
    except socket.timeout:
        print("no answer after 5 s: the server is still waiting for 2^62 bytes")


def other_origin(port, pid):
    sock, status = open_websocket(port, "Origin: http://evil.example\r\n")
    print("a page on http://evil.example asks to connect:", status)


def stop(port, pid):
    sock, status = open_websocket(port)
    for i in range(1000):  # 1000 messages, sent before we read a single echo
        payload = f"message {i}".encode()
        sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + b"\0\0\0\0" + payload)
    os.kill(pid, signal.SIGTERM)
    echoed = 0  # messages, not frames: a message may come back in two frames
    while (frame := read_message(sock)) is not None and frame[0] != 8:
        echoed += 1
    print(f"{echoed} of 1000 echoed, then", "nothing: the connection was cut (1006)"
          if frame is None else f"a close frame: {struct.unpack('!H', frame[1][:2])[0]}")


ATTACKS = {"slowloris": slowloris, "silent": silent, "huge-frame": huge_frame,
           "other-origin": other_origin, "stop": stop}

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("attack", choices=ATTACKS)
    parser.add_argument("--port", type=int, default=5175)
    parser.add_argument("--pid", type=int, help="the server's pid (slowloris, silent, stop)")
    options = parser.parse_args()
    ATTACKS[options.attack](options.port, options.pid)
