/* test_server.c -- integration tests: the real ./server, over loopback.
 *
 * What a client sees of the protocol (echoes at every length, fragments,
 * pings, protocol errors and their close codes, the closing handshake) is
 * tested case by case in test_conformance.c. Here is the rest: the HTTP
 * answers, many messages or clients at once, a frame that comes with the
 * request, a client that vanishes.
 *
 * One server runs per TCase (an unchecked fixture); each test is a client
 * that connects to it, in its own process. */
#define _POSIX_C_SOURCE 200809L

#include "../ws.h"
#include "client.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ==== Echo ============================================================== */

START_TEST(test_echoes_many_messages_on_one_connection_in_order)
{
    struct client client;
    open_or_fail(&client);
    char message[32];
    for (int i = 0; i < 100; i++) {
        int length = snprintf(message, sizeof message, "message %d", i);
        ck_assert_int_eq(client_send_frame(&client, true, WS_OPCODE_TEXT, message, (size_t)length),
                         0);
    }
    for (int i = 0; i < 100; i++) {
        int length = snprintf(message, sizeof message, "message %d", i);
        expect_message(&client, WS_OPCODE_TEXT, message, (size_t)length);
    }
    close_cleanly(&client);
}
END_TEST

START_TEST(test_echoes_a_frame_sent_together_with_the_request)
{
    /* A client may send its first frame without waiting for the 101. */
    struct client client;
    ck_assert_int_eq(client_connect(&client, test_server_port), 0);
    const char request[] = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n";
    /* The RFC 6455 §5.7 masked "Hello" frame. */
    const uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    uint8_t both[sizeof request - 1 + sizeof hello];
    memcpy(both, request, sizeof request - 1);
    memcpy(both + sizeof request - 1, hello, sizeof hello);
    ck_assert_int_eq(client_send_raw(&client, both, sizeof both, 0), 0);

    /* Read the 101 a byte at a time, so no byte of the echo is taken with it. */
    char response[512] = "";
    size_t got = 0;
    while (strstr(response, "\r\n\r\n") == NULL && got < sizeof response - 1) {
        ssize_t n = recv(client.fd, response + got, 1, 0);
        ck_assert_int_eq(n, 1);
        got++;
    }
    ck_assert(strncmp(response, "HTTP/1.1 101 ", 13) == 0);
    expect_message(&client, WS_OPCODE_TEXT, "Hello", 5);
    close_cleanly(&client);
}
END_TEST

/* ==== HTTP answers ====================================================== */

/* Sends request and checks that the response contains every string in want. */
static void expect_http(const char *request, size_t length, const char *const *want)
{
    char *response = http_exchange(test_server_port, request, length);
    ck_assert_msg(response != NULL, "no response");
    for (; *want != NULL; want++)
        ck_assert_msg(strstr(response, *want) != NULL, "expected \"%s\" in:\n%s", *want, response);
    free(response);
}

START_TEST(test_plain_get_gets_400_with_a_reason)
{
    const char request[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    const char *want[] = {"HTTP/1.1 400 Bad Request\r\n", "Content-Type: text/plain",
                          "Connection: close", "not a WebSocket request", NULL};
    expect_http(request, strlen(request), want);
}
END_TEST

START_TEST(test_version_8_gets_426_naming_version_13)
{
    const char request[] = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 8\r\n\r\n";
    const char *want[] = {"HTTP/1.1 426 Upgrade Required\r\n", "Sec-WebSocket-Version: 13\r\n",
                          "version 13", NULL};
    expect_http(request, strlen(request), want);
}
END_TEST

START_TEST(test_bad_key_gets_400)
{
    const char request[] = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: short\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n";
    const char *want[] = {"HTTP/1.1 400 Bad Request\r\n", "Sec-WebSocket-Key", NULL};
    expect_http(request, strlen(request), want);
}
END_TEST

START_TEST(test_header_block_over_8_KiB_gets_431)
{
    static char request[12 * 1024];
    strcpy(request, "GET / HTTP/1.1\r\nHost: x\r\nX-Padding: ");
    size_t length = strlen(request);
    memset(request + length, 'a', 9000);
    strcpy(request + length + 9000, "\r\n\r\n");
    const char *want[] = {"HTTP/1.1 431 ", NULL};
    expect_http(request, strlen(request), want);
}
END_TEST

START_TEST(test_garbage_gets_400_and_the_server_goes_on)
{
    const char garbage[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n";
    const char *want[] = {"HTTP/1.1 400 ", NULL};
    expect_http(garbage, sizeof garbage - 1, want);
    struct client client;
    open_or_fail(&client);
    close_cleanly(&client);
}
END_TEST

/* ==== Many clients ====================================================== */

START_TEST(test_two_clients_at_once_do_not_wait_for_each_other)
{
    /* A sends half a frame and stalls; B must still be served at once. */
    struct client a;
    struct client b;
    open_or_fail(&a);
    const uint8_t half[] = {0x81, 0x85, 0, 0, 0, 0, 'H', 'e'};
    ck_assert_int_eq(client_send_raw(&a, half, sizeof half, 0), 0);
    open_or_fail(&b);
    ck_assert_int_eq(client_send_frame(&b, true, WS_OPCODE_BINARY, "from B", 6), 0);
    expect_message(&b, WS_OPCODE_BINARY, "from B", 6);
    ck_assert_int_eq(client_send_raw(&a, "llo", 3, 0), 0);
    expect_message(&a, WS_OPCODE_TEXT, "Hello", 5);
    close_cleanly(&b);
    close_cleanly(&a);
}
END_TEST

START_TEST(test_client_vanishing_mid_echo_does_not_hurt_the_server)
{
    /* The server is still writing 1 MiB when the client resets the
     * connection: its send fails with EPIPE or ECONNRESET, not SIGPIPE. */
    for (int round = 0; round < 5; round++) {
        struct client gone;
        open_or_fail(&gone);
        size_t length = (size_t)1024 * 1024;
        uint8_t *payload = malloc(length);
        fill_payload(payload, length, false, 7);
        ck_assert_int_eq(client_send_frame(&gone, true, WS_OPCODE_BINARY, payload, length), 0);
        free(payload);
        client_close(&gone);
    }
    struct client client;
    open_or_fail(&client);
    ck_assert_int_eq(client_send_frame(&client, true, WS_OPCODE_TEXT, "still here", 10), 0);
    expect_message(&client, WS_OPCODE_TEXT, "still here", 10);
    close_cleanly(&client);
}
END_TEST

/* ==== The suite ========================================================= */

static Suite *server_suite(void)
{
    Suite *suite = suite_create("server");

    TCase *echo = tcase_with_server(suite, "echo", NULL, 30);
    tcase_add_test(echo, test_echoes_many_messages_on_one_connection_in_order);
    tcase_add_test(echo, test_echoes_a_frame_sent_together_with_the_request);

    TCase *http = tcase_with_server(suite, "HTTP answers", NULL, 30);
    tcase_add_test(http, test_plain_get_gets_400_with_a_reason);
    tcase_add_test(http, test_version_8_gets_426_naming_version_13);
    tcase_add_test(http, test_bad_key_gets_400);
    tcase_add_test(http, test_header_block_over_8_KiB_gets_431);
    tcase_add_test(http, test_garbage_gets_400_and_the_server_goes_on);

    TCase *clients = tcase_with_server(suite, "many clients", NULL, 30);
    tcase_add_test(clients, test_two_clients_at_once_do_not_wait_for_each_other);
    tcase_add_test(clients, test_client_vanishing_mid_echo_does_not_hurt_the_server);
    return suite;
}

int main(void)
{
    return run_suite(server_suite());
}
