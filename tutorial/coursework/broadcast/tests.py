"""Grader tests for the broadcast project (see BRIEF.md)."""
import socket
import threading
import time

from test_steps import Client, close_frame

JOIN_DELAY = 0.3  # time for the server's threads to put new clients in the room


def read_messages(client, count, into, errors):
    """Reads count whole messages into the list `into` (run in a thread)."""
    try:
        for _ in range(count):
            into.append(client.read_message())
    except Exception as error:  # the test reports it
        errors.append(repr(error))


def start_readers(clients, count):
    """One reading thread per client, started; returns them, the lists they
    fill, and the errors they met."""
    results = [[] for _ in clients]
    errors = []
    threads = [threading.Thread(target=read_messages, args=(c, count, r, errors), daemon=True)
               for c, r in zip(clients, results)]
    for thread in threads:
        thread.start()
    return threads, results, errors


def test_everyone_in_the_room_receives_a_message(server):
    a, b, c = Client(server), Client(server), Client(server)
    time.sleep(JOIN_DELAY)
    a.send_frame(1, b"hello, room")
    for client in (a, b, c):
        assert client.read_message() == (1, b"hello, room")
    b.send_frame(2, b"\x00\x01")
    for client in (a, b, c):
        assert client.read_message() == (2, b"\x00\x01")


def test_messages_from_two_senders_never_interleave(server):
    """Each message is sent in three fragments by two senders at once; every
    member must receive 60 whole messages, in the same order as the others."""
    members = [Client(server) for _ in range(3)]
    time.sleep(JOIN_DELAY)
    threads, results, errors = start_readers(members, 60)

    def send(client, name):
        for i in range(30):
            body = f"{name}-{i:02d}-".encode() + bytes([65 + i % 26]) * 3000
            client.send_frame(1, body[:1000], fin=False)
            client.send_frame(0, body[1000:2000], fin=False)
            client.send_frame(0, body[2000:], fin=True)

    senders = [threading.Thread(target=send, args=(members[i], "AB"[i])) for i in range(2)]
    for thread in senders:
        thread.start()
    for thread in senders + threads:
        thread.join(timeout=20)
    for received in results:
        assert len(received) == 60, f"got {len(received)} of 60 messages; {errors}"
        for opcode, body in received:
            name, number = body[:1].decode(), int(body[2:4])
            assert body == f"{name}-{number:02d}-".encode() + bytes([65 + number % 26]) * 3000
    assert results[0] == results[1] == results[2], "members saw different orders"


def test_a_client_that_stops_reading_does_not_stall_the_room(server):
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", server.port))
    slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    a, b = Client(server), Client(server)
    time.sleep(JOIN_DELAY)
    threads, results, errors = start_readers([a, b], 100)
    start = time.monotonic()
    for i in range(100):
        a.send_frame(2, bytes([i]) * 60000)
    for thread in threads:
        thread.join(timeout=30)
    elapsed = time.monotonic() - start
    assert len(results[1]) == 100, f"b got {len(results[1])} of 100 messages; {errors}"
    assert all(body == bytes([i]) * 60000 for i, (op, body) in enumerate(results[1]))
    assert elapsed < 20, f"the room took {elapsed:.1f} s"
    slow.close()


def test_a_client_leaving_does_not_disturb_the_others(server):
    a, b, c = Client(server), Client(server), Client(server)
    time.sleep(JOIN_DELAY)
    c.close()  # without a closing handshake
    time.sleep(JOIN_DELAY)
    a.send_frame(1, b"still here?")
    assert a.read_message() == (1, b"still here?")
    assert b.read_message() == (1, b"still here?")


def test_the_closing_handshake_still_works(server):
    a = Client(server)
    a.send_frame(8, close_frame(1000, b"bye"))
    assert a.expect_close(1000) == b"bye"


TESTS = [
    test_everyone_in_the_room_receives_a_message,
    test_messages_from_two_senders_never_interleave,
    test_a_client_that_stops_reading_does_not_stall_the_room,
    test_a_client_leaving_does_not_disturb_the_others,
    test_the_closing_handshake_still_works,
]
