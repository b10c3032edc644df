/* test_server.c -- integration tests: the real ./server, over loopback.
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

#define COUNT(array) ((int)(sizeof(array) / sizeof((array)[0])))

/* ==== Echo ============================================================== */

/* Each length form's edges (RFC 6455 §5.2), and 1 MiB: far larger than the
 * notifier's 4 KiB buffer, so it comes back in many frames. */
static const size_t ECHO_LENGTHS[] = {0, 125, 126, 65535, 65536, (size_t)1024 * 1024};

START_TEST(test_echoes_text_and_binary_at_every_length_form)
{
    size_t length = ECHO_LENGTHS[_i / 2];
    bool text = _i % 2 == 0;
    uint8_t opcode = text ? WS_OPCODE_TEXT : WS_OPCODE_BINARY;
    uint8_t *payload = malloc(length + 1);
    fill_payload(payload, length, text, (unsigned)_i);

    struct client client;
    open_or_fail(&client);
    ck_assert_int_eq(client_send_frame(&client, true, opcode, payload, length), 0);
    expect_message(&client, opcode, payload, length);
    close_cleanly(&client);
    free(payload);
}
END_TEST

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

/* ==== Fragmentation and control frames ================================== */

START_TEST(test_fragmented_message_with_a_ping_between_fragments)
{
    struct client client;
    open_or_fail(&client);
    ck_assert_int_eq(client_send_frame(&client, false, WS_OPCODE_TEXT, "Hello, ", 7), 0);
    ck_assert_int_eq(client_send_frame(&client, true, WS_OPCODE_PING, "are you there?", 14), 0);
    ck_assert_int_eq(client_send_frame(&client, true, WS_OPCODE_CONTINUATION, "world", 5), 0);

    /* The echo streams: its first fragment may come before the pong. */
    char message[64];
    char pongs[2][WS_MAX_CONTROL_PAYLOAD + 1];
    ck_assert_int_eq(client_read_message_and_pongs(&client, message, sizeof message, pongs, 2), 1);
    ck_assert_str_eq(pongs[0], "are you there?");
    ck_assert_str_eq(message, "Hello, world");
    close_cleanly(&client);
}
END_TEST

START_TEST(test_ping_is_answered_with_the_same_payload)
{
    struct client client;
    open_or_fail(&client);
    ck_assert_int_eq(client_send_frame(&client, true, WS_OPCODE_PING, "\x00\xff\x01", 3), 0);
    expect_pong(&client, "\x00\xff\x01", 3);
    ck_assert_int_eq(client_send_frame(&client, true, WS_OPCODE_PONG, "unsolicited", 11), 0);
    ck_assert_int_eq(client_send_frame(&client, true, WS_OPCODE_TEXT, "after pong", 10), 0);
    expect_message(&client, WS_OPCODE_TEXT, "after pong", 10);
    close_cleanly(&client);
}
END_TEST

/* ==== Protocol errors fail the connection with the right code =========== */

static void send_unmasked_frame(struct client *c)
{
    client_send_frame_ex(c, true, 0, WS_OPCODE_TEXT, false, "hi", 2, 0);
}
static void send_reserved_bit(struct client *c)
{
    client_send_frame_ex(c, true, 4, WS_OPCODE_TEXT, true, "hi", 2, 0);
}
static void send_reserved_data_opcode(struct client *c)
{
    client_send_frame(c, true, 0x3, "hi", 2);
}
static void send_reserved_control_opcode(struct client *c)
{
    client_send_frame(c, true, 0xB, "hi", 2);
}
static void send_long_ping(struct client *c)
{
    char payload[126] = {0};
    client_send_frame(c, true, WS_OPCODE_PING, payload, sizeof payload);
}
static void send_fragmented_ping(struct client *c)
{
    client_send_frame(c, false, WS_OPCODE_PING, "a", 1);
}
static void send_continuation_without_start(struct client *c)
{
    client_send_frame(c, true, WS_OPCODE_CONTINUATION, "hi", 2);
}
static void send_new_message_inside_fragmented_one(struct client *c)
{
    client_send_frame(c, false, WS_OPCODE_TEXT, "one", 3);
    client_send_frame(c, true, WS_OPCODE_BINARY, "two", 3);
}
static void send_invalid_utf8_text(struct client *c)
{
    client_send_frame(c, true, WS_OPCODE_TEXT, "ok \xed\xa0\x80", 6);
}
static void send_invalid_utf8_across_fragments(struct client *c)
{
    client_send_frame(c, false, WS_OPCODE_TEXT, "\xf0\x9f", 2);
    client_send_frame(c, true, WS_OPCODE_CONTINUATION, "\x98", 1); /* one byte short */
}
static void send_invalid_utf8_close_reason(struct client *c)
{
    client_send_close(c, 1000, "bad \xff reason");
}
static void send_one_byte_close(struct client *c)
{
    client_send_frame(c, true, WS_OPCODE_CLOSE, "\x03", 1);
}
static void send_oversized_length(struct client *c)
{
    const uint8_t header[] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    client_send_raw(c, header, sizeof header, 0);
}

static const struct {
    void (*send)(struct client *);
    int code;
    int frames_echoed_first;
} PROTOCOL_ERRORS[] = {
    {send_unmasked_frame, 1002, 0},
    {send_reserved_bit, 1002, 0},
    {send_reserved_data_opcode, 1002, 0},
    {send_reserved_control_opcode, 1002, 0},
    {send_long_ping, 1002, 0},
    {send_fragmented_ping, 1002, 0},
    {send_continuation_without_start, 1002, 0},
    {send_new_message_inside_fragmented_one, 1002, 1},
    {send_invalid_utf8_text, 1007, 0},
    {send_invalid_utf8_across_fragments, 1007, 1},
    {send_invalid_utf8_close_reason, 1007, 0},
    {send_one_byte_close, 1002, 0},
    {send_oversized_length, 1002, 0},
};

START_TEST(test_protocol_error_fails_the_connection_with_its_code)
{
    struct client client;
    open_or_fail(&client);
    PROTOCOL_ERRORS[_i].send(&client);
    /* A fragment read before the error was already handed to the notifier,
     * which echoed it: that frame comes before the close. */
    for (int i = 0; i < PROTOCOL_ERRORS[_i].frames_echoed_first; i++) {
        struct frame frame;
        ck_assert_int_eq(client_read_frame(&client, &frame), 0);
        ck_assert_uint_ne(frame.opcode, WS_OPCODE_CLOSE);
        frame_free(&frame);
    }
    expect_close(&client, PROTOCOL_ERRORS[_i].code);
}
END_TEST

static const int INVALID_CLOSE_CODES[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000};

START_TEST(test_invalid_close_code_is_a_protocol_error)
{
    struct client client;
    open_or_fail(&client);
    ck_assert_int_eq(client_send_close(&client, INVALID_CLOSE_CODES[_i], ""), 0);
    expect_close(&client, 1002);
}
END_TEST

/* ==== The closing handshake ============================================= */

START_TEST(test_close_with_status_and_reason_is_echoed)
{
    struct client client;
    open_or_fail(&client);
    ck_assert_int_eq(client_send_close(&client, 4001, "see you"), 0);
    struct frame frame;
    ck_assert_int_eq(client_read_frame(&client, &frame), 0);
    ck_assert_uint_eq(frame.opcode, WS_OPCODE_CLOSE);
    ck_assert_uint_eq(frame.length, 2 + 7);
    ck_assert_mem_eq(frame.payload, "\x0f\xa1see you", 9);
    frame_free(&frame);
    ck_assert(client_wait_for_eof(&client));
    client_close(&client);
}
END_TEST

START_TEST(test_close_without_status_is_answered_with_an_empty_close)
{
    struct client client;
    open_or_fail(&client);
    ck_assert_int_eq(client_send_close(&client, CLOSE_EMPTY, NULL), 0);
    expect_close(&client, CLOSE_EMPTY);
}
END_TEST

START_TEST(test_nothing_is_echoed_after_close)
{
    struct client client;
    open_or_fail(&client);
    ck_assert_int_eq(client_send_close(&client, 1000, ""), 0);
    ck_assert_int_eq(client_send_frame(&client, true, WS_OPCODE_TEXT, "late", 4), 0);
    ck_assert_int_eq(client_send_frame(&client, true, WS_OPCODE_PING, "late", 4), 0);
    expect_close(&client, 1000);
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

static TCase *server_tcase(const char *name)
{
    TCase *tcase = tcase_create(name);
    tcase_add_unchecked_fixture(tcase, fixture_start_server, fixture_stop_server);
    tcase_set_timeout(tcase, 30);
    return tcase;
}

static Suite *server_suite(void)
{
    Suite *suite = suite_create("server");

    TCase *echo = server_tcase("echo");
    tcase_add_loop_test(echo, test_echoes_text_and_binary_at_every_length_form, 0,
                        2 * COUNT(ECHO_LENGTHS));
    tcase_add_test(echo, test_echoes_many_messages_on_one_connection_in_order);
    tcase_add_test(echo, test_echoes_a_frame_sent_together_with_the_request);
    suite_add_tcase(suite, echo);

    TCase *control = server_tcase("fragments and control frames");
    tcase_add_test(control, test_fragmented_message_with_a_ping_between_fragments);
    tcase_add_test(control, test_ping_is_answered_with_the_same_payload);
    suite_add_tcase(suite, control);

    TCase *errors = server_tcase("protocol errors");
    tcase_add_loop_test(errors, test_protocol_error_fails_the_connection_with_its_code, 0,
                        COUNT(PROTOCOL_ERRORS));
    tcase_add_loop_test(errors, test_invalid_close_code_is_a_protocol_error, 0,
                        COUNT(INVALID_CLOSE_CODES));
    suite_add_tcase(suite, errors);

    TCase *closing = server_tcase("closing handshake");
    tcase_add_test(closing, test_close_with_status_and_reason_is_echoed);
    tcase_add_test(closing, test_close_without_status_is_answered_with_an_empty_close);
    tcase_add_test(closing, test_nothing_is_echoed_after_close);
    suite_add_tcase(suite, closing);

    TCase *http = server_tcase("HTTP answers");
    tcase_add_test(http, test_plain_get_gets_400_with_a_reason);
    tcase_add_test(http, test_version_8_gets_426_naming_version_13);
    tcase_add_test(http, test_bad_key_gets_400);
    tcase_add_test(http, test_header_block_over_8_KiB_gets_431);
    tcase_add_test(http, test_garbage_gets_400_and_the_server_goes_on);
    suite_add_tcase(suite, http);

    TCase *clients = server_tcase("many clients");
    tcase_add_test(clients, test_two_clients_at_once_do_not_wait_for_each_other);
    tcase_add_test(clients, test_client_vanishing_mid_echo_does_not_hurt_the_server);
    suite_add_tcase(suite, clients);
    return suite;
}

int main(void)
{
    return run_suite(server_suite());
}
