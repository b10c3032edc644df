"""Grader tests for the subprotocol project (see BRIEF.md)."""
import asyncio
import json
import os

from test_steps import Client, close_frame

PROTOCOL_LINE = b"\r\nSec-WebSocket-Protocol: json\r\n"


def describe(client):
    opcode, payload = client.read_message()
    assert opcode == 1, f"the description must be a text message, got opcode {opcode}"
    return json.loads(payload)


def test_json_is_agreed_when_offered(server):
    client = Client(server, "Sec-WebSocket-Protocol: json\r\n")
    assert PROTOCOL_LINE in client.response, client.response


def test_json_describes_each_message(server):
    client = Client(server, "Sec-WebSocket-Protocol: json\r\n")
    client.send_frame(1, b"hello")
    assert describe(client) == {"type": "text", "length": 5}
    client.send_frame(2, b"\x00\x01\x02")
    assert describe(client) == {"type": "binary", "length": 3}


def test_json_describes_a_message_larger_than_the_buffer_once(server):
    client = Client(server, "Sec-WebSocket-Protocol: json\r\n")
    client.send_frame(2, os.urandom(100000))
    client.send_frame(1, b"frag", fin=False)
    client.send_frame(0, b"ment", fin=True)
    assert describe(client) == {"type": "binary", "length": 100000}
    assert describe(client) == {"type": "text", "length": 8}
    client.send_frame(8, close_frame(1000))
    client.expect_close(1000)


def test_json_is_found_in_a_list_and_across_header_lines(server):
    listed = Client(server, "Sec-WebSocket-Protocol: chat, json\r\n")
    assert PROTOCOL_LINE in listed.response, listed.response
    split = Client(server, "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: json\r\n")
    assert PROTOCOL_LINE in split.response, split.response


def test_an_unknown_subprotocol_is_not_agreed_and_messages_echo(server):
    client = Client(server, "Sec-WebSocket-Protocol: xml\r\n")
    assert b"Sec-WebSocket-Protocol" not in client.response, client.response
    client.send_frame(1, b"hello")
    assert client.read_message() == (1, b"hello")


def test_without_a_subprotocol_messages_echo(server):
    client = Client(server)
    assert b"Sec-WebSocket-Protocol" not in client.response, client.response
    client.send_frame(1, b"hello")
    assert client.read_message() == (1, b"hello")


def test_python_websockets_agrees_on_json(server):
    import websockets  # Debian's python3-websockets, a client we did not write

    async def exchange():
        uri = f"ws://127.0.0.1:{server.port}"
        async with websockets.connect(uri, subprotocols=["json"]) as ws:
            assert ws.subprotocol == "json", ws.subprotocol
            await ws.send("κόσμε")
            return json.loads(await ws.recv())

    assert asyncio.run(exchange()) == {"type": "text", "length": len("κόσμε".encode())}


TESTS = [
    test_json_is_agreed_when_offered,
    test_json_describes_each_message,
    test_json_describes_a_message_larger_than_the_buffer_once,
    test_json_is_found_in_a_list_and_across_header_lines,
    test_an_unknown_subprotocol_is_not_agreed_and_messages_echo,
    test_without_a_subprotocol_messages_echo,
    test_python_websockets_agrees_on_json,
]
