/* test_reliability.c -- integration tests for the behaviours that keep the
 * server alive in the real world (the tutorial, from "The slow client" on):
 * each runs the real ./server over loopback with the option it tests, and
 * plays the client that attacks it, vanishes, or is in the way when the
 * server stops.
 *
 * Each TCase starts its own server with its own options (an unchecked
 * fixture, stopped by pid); timeouts are set to a second or two so that the
 * whole suite stays short. */
#define _GNU_SOURCE /* prlimit() */

#include "../ws.h"
#include "client.h"

#include <check.h>
#include <errno.h>
#include <linux/sockios.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

static void sleep_milliseconds(long milliseconds)
{
    struct timespec pause = {.tv_sec = milliseconds / 1000,
                             .tv_nsec = (milliseconds % 1000) * 1000000};
    nanosleep(&pause, NULL);
}

/* Sends text as one masked text frame and expects it back. */
static void echo_or_fail(struct client *client, const char *text)
{
    ck_assert_int_eq(client_send_frame(client, true, WS_OPCODE_TEXT, text, strlen(text)), 0);
    expect_message(client, WS_OPCODE_TEXT, text, strlen(text));
}

/* A plain TCP connection to the server on port that has sent only the start
 * of a request: a "slowloris" client. Returns the socket. */
static int start_slow_request_on(int port)
{
    struct client client;
    ck_assert_int_eq(client_connect(&client, port), 0);
    const char start[] = "GET / HTTP/1.1\r\nHost: x\r\n";
    ck_assert_int_eq(send(client.fd, start, sizeof start - 1, 0), (ssize_t)sizeof start - 1);
    int fd = dup(client.fd);
    client_close(&client);
    return fd;
}

static int start_slow_request(void)
{
    return start_slow_request_on(test_server_port);
}

/* Reads what the server sent on fd (until it closes, at most size - 1 bytes)
 * into response. */
static void read_response(int fd, char *response, size_t size)
{
    size_t length = 0;
    ssize_t got;
    while (length < size - 1 && (got = recv(fd, response + length, size - 1 - length, 0)) > 0)
        length += (size_t)got;
    response[length] = '\0';
}

/* ==== Handshake timeout (slowloris) ===================================== */

static const char *const WITH_HANDSHAKE_TIMEOUT[] = {"--handshake-timeout", "2", NULL};

START_TEST(test_request_that_never_completes_gets_408)
{
    int fd = start_slow_request();
    char response[512];
    read_response(fd, response, sizeof response);
    ck_assert_msg(strncmp(response, "HTTP/1.1 408 Request Timeout\r\n", 30) == 0,
                  "expected a 408, got: %s", response);
    close(fd);
}
END_TEST

START_TEST(test_request_sent_a_byte_at_a_time_still_times_out)
{
    /* One deadline for the whole request (2 s here): bytes that keep
     * trickling in, one every 300 ms, do not postpone it. Sending all of
     * these would take 12 s. */
    int fd = start_slow_request();
    const char header[] = "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    size_t sent = 0;
    while (sent < sizeof header - 1 && send(fd, header + sent, 1, MSG_NOSIGNAL) == 1) {
        sent++;
        struct pollfd readable = {.fd = fd, .events = POLLIN};
        if (poll(&readable, 1, 300) > 0)
            break; /* the server has answered */
    }
    ck_assert_msg(sent < 20, "still no answer after %zu bytes, one every 300 ms", sent);
    char response[512];
    read_response(fd, response, sizeof response);
    ck_assert_msg(strncmp(response, "HTTP/1.1 408 ", 13) == 0, "expected a 408, got: %s", response);
    close(fd);
}
END_TEST

enum { SLOW_CLIENTS = 1000 };

START_TEST(test_a_thousand_slow_clients_do_not_delay_a_good_one)
{
    static int slow[SLOW_CLIENTS];
    for (int i = 0; i < SLOW_CLIENTS; i++)
        slow[i] = start_slow_request();

    /* A good client is served while all of them are still waiting... */
    struct client client;
    open_or_fail(&client);
    echo_or_fail(&client, "not delayed");
    close_cleanly(&client);
    int answered_early = 0;
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        struct pollfd readable = {.fd = slow[i], .events = POLLIN};
        answered_early += poll(&readable, 1, 0) > 0;
    }
    ck_assert_msg(answered_early == 0,
                  "%d slow clients were answered before the good one finished: the good one "
                  "waited for the timeout",
                  answered_early);

    /* ...and then every one of them gets its 408. */
    int timed_out = 0;
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        char response[256];
        read_response(slow[i], response, sizeof response);
        timed_out += strncmp(response, "HTTP/1.1 408 ", 13) == 0;
        close(slow[i]);
    }
    ck_assert_int_eq(timed_out, SLOW_CLIENTS);
}
END_TEST

/* ==== Keep-alive ======================================================== */

static const char *const WITH_PING_INTERVAL[] = {"--ping-interval", "1", NULL};

START_TEST(test_idle_connection_is_pinged)
{
    struct client client;
    open_or_fail(&client);
    struct frame frame;
    ck_assert_int_eq(client_read_frame(&client, &frame), 0); /* within the 3 s timeout */
    ck_assert_uint_eq(frame.opcode, WS_OPCODE_PING);
    frame_free(&frame);
    ck_assert_int_eq(client_send_frame(&client, true, WS_OPCODE_PONG, NULL, 0), 0);
    echo_or_fail(&client, "still here");
    close_cleanly(&client);
}
END_TEST

START_TEST(test_peer_that_answers_pings_stays_connected)
{
    struct client client;
    open_or_fail(&client);
    for (int i = 0; i < 3; i++) { /* three intervals */
        struct frame frame;
        ck_assert_int_eq(client_read_frame(&client, &frame), 0);
        ck_assert_uint_eq(frame.opcode, WS_OPCODE_PING);
        ck_assert_int_eq(
            client_send_frame(&client, true, WS_OPCODE_PONG, frame.payload, (size_t)frame.length),
            0);
        frame_free(&frame);
    }
    echo_or_fail(&client, "still here");
    close_cleanly(&client);
}
END_TEST

START_TEST(test_peer_that_stops_answering_is_closed_with_1001)
{
    /* This client reads, but never answers: as if the other end had gone
     * and only the kernel's socket were left. */
    struct client client;
    open_or_fail(&client);
    struct frame frame;
    ck_assert_int_eq(client_read_frame(&client, &frame), 0);
    ck_assert_uint_eq(frame.opcode, WS_OPCODE_PING);
    frame_free(&frame);
    expect_close(&client, WS_CLOSE_GOING_AWAY);
    client_close(&client);
}
END_TEST

/* ==== Connection limit ================================================== */

static const char *const WITH_TWO_CONNECTIONS_AT_MOST[] = {"--max-connections", "2", NULL};

START_TEST(test_client_over_the_limit_gets_503_with_retry_after)
{
    struct client first;
    struct client second;
    open_or_fail(&first);
    open_or_fail(&second);

    struct client third;
    char response[1024];
    ck_assert_int_eq(client_handshake(&third, test_server_port, NULL, response, sizeof response),
                     0);
    ck_assert_msg(strncmp(response, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0,
                  "expected a 503, got: %s", response);
    ck_assert_msg(strstr(response, "\r\nRetry-After: ") != NULL, "no Retry-After in: %s", response);
    client_close(&third);

    /* The two that got in are served as before, and once one leaves, there
     * is room again. */
    echo_or_fail(&first, "first");
    echo_or_fail(&second, "second");
    close_cleanly(&first);
    sleep_milliseconds(100); /* its thread ends just after the close */
    struct client fourth;
    open_or_fail(&fourth);
    echo_or_fail(&fourth, "fourth");
    close_cleanly(&fourth);
    close_cleanly(&second);
}
END_TEST

static const char *const WITH_TEN_CONNECTIONS_AT_MOST[] = {"--max-connections", "10", NULL};

enum { HELD_CLIENTS = 10, REFUSED_CLIENTS = 1000 };

/* A plain TCP connection to the test server that has sent a whole
 * handshake request. Returns the socket. */
static int send_handshake_request(void)
{
    int fd = start_slow_request();
    const char rest[] = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n";
    ck_assert_int_eq(send(fd, rest, sizeof rest - 1, 0), (ssize_t)sizeof rest - 1);
    return fd;
}

/* True when response is a whole 503: its headers, and a body of exactly the
 * length its Content-Length announced. */
static bool is_whole_503(const char *response)
{
    const char *length_header = strstr(response, "\r\nContent-Length: ");
    const char *body = strstr(response, "\r\n\r\n");
    return strncmp(response, "HTTP/1.1 503 ", 13) == 0 && length_header != NULL && body != NULL &&
           strlen(body + 4) == strtoul(length_header + 18, NULL, 10);
}

/* Issue 13: the accept loop refused each client with a 503 and then waited
 * (up to 100 ms) for it to leave, so a burst of a thousand refused clients
 * left everyone without an answer for tens of seconds. */
START_TEST(test_a_burst_over_the_limit_is_refused_without_stalling_the_accept_loop)
{
    static struct client held[HELD_CLIENTS];
    static int refused[REFUSED_CLIENTS];
    for (int i = 0; i < HELD_CLIENTS; i++)
        open_or_fail(&held[i]);
    for (int i = 0; i < REFUSED_CLIENTS; i++)
        refused[i] = send_handshake_request();

    /* A client arriving behind the burst is answered within a second (the
     * sanitizers' slower servers get CK_TIMEOUT_MULTIPLIER seconds). None of
     * the refused clients has read anything or left yet. */
    const char *multiplier = getenv("CK_TIMEOUT_MULTIPLIER");
    int limit = 1000 * (multiplier != NULL ? atoi(multiplier) : 1);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int late = send_handshake_request();
    struct pollfd readable = {.fd = late, .events = POLLIN};
    int ready = poll(&readable, 1, limit);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    ck_assert_msg(ready == 1, "a client behind %d refused ones had no answer after %d ms",
                  REFUSED_CLIENTS, limit);
    char response[1024];
    read_response(late, response, sizeof response);
    ck_assert_msg(is_whole_503(response), "expected a whole 503 after %ld ms, got: %s", waited,
                  response);
    close(late);

    /* Every refused client gets its whole 503: no reset cut one short. */
    int whole = 0;
    for (int i = 0; i < REFUSED_CLIENTS; i++) {
        read_response(refused[i], response, sizeof response);
        whole += is_whole_503(response);
        close(refused[i]);
    }
    ck_assert_msg(whole == REFUSED_CLIENTS, "%d of %d refused clients got a whole 503", whole,
                  REFUSED_CLIENTS);
    for (int i = 0; i < HELD_CLIENTS; i++) {
        echo_or_fail(&held[i], "still served");
        close_cleanly(&held[i]);
    }
}
END_TEST

/* ==== Message size limit ================================================ */

static const char *const WITH_MAX_MESSAGE_1000[] = {"--max-message", "1000", NULL};

START_TEST(test_frame_announcing_too_much_gets_1009_before_its_payload)
{
    struct client client;
    open_or_fail(&client);
    /* A header saying 2^62 bytes follow, and none of them: the server must
     * answer from the header alone. */
    const uint8_t header[] = {0x82, 0x80 | 127, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    ck_assert_int_eq(client_send_raw(&client, header, sizeof header, 0), 0);
    expect_close(&client, WS_CLOSE_MESSAGE_TOO_BIG);
    client_close(&client);
}
END_TEST

START_TEST(test_message_growing_past_the_limit_in_fragments_gets_1009)
{
    struct client client;
    open_or_fail(&client);
    uint8_t fragment[600];
    fill_payload(fragment, sizeof fragment, false, 1);
    ck_assert_int_eq(client_send_frame(&client, false, WS_OPCODE_BINARY, fragment, 600), 0);
    ck_assert_int_eq(client_send_frame(&client, true, WS_OPCODE_CONTINUATION, fragment, 600), 0);
    /* The first fragment was echoed as it came; then the close. */
    struct frame frame;
    ck_assert_int_eq(client_read_frame(&client, &frame), 0);
    ck_assert_uint_eq(frame.opcode, WS_OPCODE_BINARY);
    frame_free(&frame);
    expect_close(&client, WS_CLOSE_MESSAGE_TOO_BIG);
    client_close(&client);
}
END_TEST

START_TEST(test_message_at_the_limit_is_echoed)
{
    struct client client;
    open_or_fail(&client);
    uint8_t payload[1000];
    fill_payload(payload, sizeof payload, false, 2);
    ck_assert_int_eq(client_send_frame(&client, false, WS_OPCODE_BINARY, payload, 400), 0);
    ck_assert_int_eq(client_send_frame(&client, true, WS_OPCODE_CONTINUATION, payload + 400, 600),
                     0);
    expect_message(&client, WS_OPCODE_BINARY, payload, sizeof payload);
    close_cleanly(&client);
}
END_TEST

/* ==== Origin allow-list ================================================= */

static const char *const WITH_TWO_ALLOWED_ORIGINS[] = {
    "--allow-origin", "http://good.example", "--allow-origin", "https://also.example:8443", NULL};

/* The status line the server answers a request with this Origin header. */
static void expect_status_for_origin(const char *origin_header, const char *status_line)
{
    struct client client;
    char response[1024];
    ck_assert_int_eq(
        client_handshake(&client, test_server_port, origin_header, response, sizeof response), 0);
    ck_assert_msg(strncmp(response, status_line, strlen(status_line)) == 0,
                  "for \"%s\" expected \"%s\", got: %s", origin_header, status_line, response);
    client_close(&client);
}

START_TEST(test_allowed_origins_are_accepted)
{
    expect_status_for_origin("Origin: http://good.example\r\n", "HTTP/1.1 101 ");
    expect_status_for_origin("Origin: https://also.example:8443\r\n", "HTTP/1.1 101 ");
}
END_TEST

START_TEST(test_other_origins_get_403)
{
    expect_status_for_origin("Origin: http://evil.example\r\n", "HTTP/1.1 403 Forbidden\r\n");
    /* Close is not the same: another port is another origin (RFC 6454). */
    expect_status_for_origin("Origin: http://good.example:8080\r\n", "HTTP/1.1 403 ");
    expect_status_for_origin("Origin: null\r\n", "HTTP/1.1 403 ");
}
END_TEST

START_TEST(test_request_without_origin_is_not_from_a_browser_and_is_accepted)
{
    expect_status_for_origin("", "HTTP/1.1 101 ");
}
END_TEST

/* ==== Graceful shutdown ================================================= */

/* Each test here stops the server itself, so each starts its own. */
static pid_t start_own_server(int *port, const char *shutdown_timeout)
{
    const char *const arguments[] = {"--shutdown-timeout", shutdown_timeout, NULL};
    pid_t pid = server_start_with(port, arguments, "/dev/null");
    ck_assert_int_gt(pid, 0);
    return pid;
}

/* How many threads the server runs (its main thread included, and any of a
 * sanitizer's runtime), from /proc. */
static int threads_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *status = fopen(path, "r");
    char line[256];
    int threads = 0;
    while (status != NULL && fgets(line, sizeof line, status) != NULL)
        sscanf(line, "Threads: %d", &threads);
    if (status != NULL)
        fclose(status);
    return threads;
}

/* Waits until the server runs at least count threads. */
static void wait_for_threads(pid_t pid, int count)
{
    for (int i = 0; i < 250 && threads_of(pid) < count; i++)
        sleep_milliseconds(20);
    ck_assert_msg(threads_of(pid) >= count, "the server never ran %d threads", count);
}

static void expect_clean_exit(pid_t pid, int milliseconds)
{
    int status = server_wait(pid, milliseconds);
    if (status == -1)
        server_stop(pid);
    ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the server did not exit with status 0 within %d ms (wait status %#x)",
                  milliseconds, (unsigned)status);
}

enum { FRAME_SIZE = 1024, PAYLOAD_SIZE = FRAME_SIZE - 8, MAX_FRAMES = 8192 }; /* 8 MiB */

/* Fills frames with count masked binary frames of exactly FRAME_SIZE bytes
 * (4 bytes of header, 4 of mask, the payload of message i). */
static void build_frames(uint8_t *frames, int count)
{
    const uint8_t key[4] = {1, 2, 3, 4};
    for (int i = 0; i < count; i++) {
        uint8_t *frame = frames + (size_t)i * FRAME_SIZE;
        struct ws_frame_header header = {.fin = true,
                                         .opcode = WS_OPCODE_BINARY,
                                         .masked = true,
                                         .payload_length = PAYLOAD_SIZE};
        memcpy(header.mask_key, key, 4);
        size_t header_size = ws_encode_frame_header(&header, frame);
        fill_payload(frame + header_size, PAYLOAD_SIZE, false, (unsigned)i);
        ws_mask(frame + header_size, PAYLOAD_SIZE, key, 0);
    }
}

START_TEST(test_shutdown_echoes_every_message_received_before_it_then_sends_1001)
{
    int port;
    pid_t pid = start_own_server(&port, "5");
    struct client client;
    ck_assert_int_eq(client_open(&client, port), 0);
    /* We send without reading a single echo, until every buffer between us
     * is full: the server is then blocked writing echoes to us, and many
     * messages wait unread in its socket when the signal comes. */
    static uint8_t frames[(size_t)MAX_FRAMES * FRAME_SIZE];
    build_frames(frames, MAX_FRAMES);
    size_t sent = 0;
    ssize_t n;
    while (sent < sizeof frames &&
           (n = send(client.fd, frames + sent, sizeof frames - sent, MSG_DONTWAIT)) > 0) {
        sent += (size_t)n;
        sleep_milliseconds(50); /* let the server catch up, until it blocks */
    }
    int unsent = 0;
    ck_assert_int_eq(ioctl(client.fd, SIOCOUTQ, &unsent), 0); /* still in our own queue */
    int delivered = (int)((sent - (size_t)unsent) / FRAME_SIZE);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);

    /* Every message the server had when the signal came is echoed; the ones
     * still in our queue may be, or may be dropped after its close. */
    int echoed = 0;
    uint8_t expected[PAYLOAD_SIZE];
    uint8_t message[PAYLOAD_SIZE];
    size_t length = 0; /* of the message so far: an echo may come in fragments */
    for (;;) {
        struct frame frame;
        ck_assert_int_eq(client_read_frame(&client, &frame), 0);
        if (frame.opcode == WS_OPCODE_CLOSE) {
            ck_assert_uint_eq(frame.payload[0] << 8 | frame.payload[1], WS_CLOSE_GOING_AWAY);
            frame_free(&frame);
            break;
        }
        ck_assert_uint_le(length + frame.length, PAYLOAD_SIZE);
        memcpy(message + length, frame.payload, (size_t)frame.length);
        length += (size_t)frame.length;
        bool fin = frame.fin;
        frame_free(&frame);
        if (!fin)
            continue;
        fill_payload(expected, PAYLOAD_SIZE, false, (unsigned)echoed);
        ck_assert_uint_eq(length, PAYLOAD_SIZE);
        ck_assert_msg(memcmp(message, expected, PAYLOAD_SIZE) == 0, "echo %d is wrong", echoed);
        length = 0;
        echoed++;
    }
    ck_assert_msg(echoed >= delivered,
                  "%d messages had reached the server before the signal, %d were echoed", delivered,
                  echoed);
    ck_assert_int_eq(client_send_close(&client, WS_CLOSE_GOING_AWAY, ""), 0);
    ck_assert(client_wait_for_eof(&client));
    client_close(&client);
    expect_clean_exit(pid, 5000);
}
END_TEST

/* The next frame is a close with 1001; we answer it, and the server ends the
 * connection. */
static void expect_close_frame_then_answer(struct client *client)
{
    struct frame frame;
    ck_assert_int_eq(client_read_frame(client, &frame), 0);
    ck_assert_uint_eq(frame.opcode, WS_OPCODE_CLOSE);
    ck_assert_uint_eq(frame.payload[0] << 8 | frame.payload[1], WS_CLOSE_GOING_AWAY);
    frame_free(&frame);
    ck_assert_int_eq(client_send_close(client, WS_CLOSE_GOING_AWAY, ""), 0);
    ck_assert(client_wait_for_eof(client));
    client_close(client);
}

START_TEST(test_shutdown_closes_every_idle_connection_with_1001_and_exits_0)
{
    int port;
    pid_t pid = start_own_server(&port, "5");
    struct client clients[10];
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(client_open(&clients[i], port), 0);
    int before = threads_of(pid); /* the ten clients' threads exist: they got their 101 */
    int slow = start_slow_request_on(port);
    /* A connection still in the listen queue would be reset when the server
     * closes its listening socket: wait until the slow one has its thread. */
    wait_for_threads(pid, before + 1);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    for (int i = 0; i < 10; i++)
        expect_close_frame_then_answer(&clients[i]);
    char response[512];
    read_response(slow, response, sizeof response);
    ck_assert_msg(strncmp(response, "HTTP/1.1 503 ", 13) == 0,
                  "a client still sending its request should get 503, got: %s", response);
    close(slow);
    expect_clean_exit(pid, 5000);
}
END_TEST

START_TEST(test_shutdown_cuts_off_a_client_that_never_answers_after_the_timeout)
{
    int port;
    pid_t pid = start_own_server(&port, "1");
    struct client client;
    ck_assert_int_eq(client_open(&client, port), 0);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    struct frame frame;
    ck_assert_int_eq(client_read_frame(&client, &frame), 0);
    ck_assert_uint_eq(frame.opcode, WS_OPCODE_CLOSE);
    frame_free(&frame);
    /* We never send our close frame: the server waits 1 s, then cuts us off
     * and exits all the same. */
    expect_clean_exit(pid, 4000);
    ck_assert(client_wait_for_eof(&client));
    client_close(&client);
}
END_TEST

/* ==== Logging =========================================================== */

/* Reads a whole small file into a static buffer. */
static const char *read_log(const char *path)
{
    static char text[8192];
    FILE *file = fopen(path, "r");
    ck_assert_ptr_nonnull(file);
    size_t length = fread(text, 1, sizeof text - 1, file);
    text[length] = '\0';
    fclose(file);
    return text;
}

START_TEST(test_each_connection_logs_one_line_when_it_opens_and_one_when_it_closes)
{
    char log_path[] = "/tmp/ws-test-log-XXXXXX";
    int log_fd = mkstemp(log_path);
    ck_assert_int_ge(log_fd, 0);
    close(log_fd);
    int port;
    pid_t pid = server_start_with(&port, NULL, log_path);
    ck_assert_int_gt(pid, 0);

    struct client client;
    ck_assert_int_eq(client_open(&client, port), 0);
    struct sockaddr_in local = {0};
    socklen_t length = sizeof local;
    ck_assert_int_eq(getsockname(client.fd, (struct sockaddr *)&local, &length), 0);
    ck_assert_int_eq(client_send_frame(&client, true, WS_OPCODE_TEXT, "hello", 5), 0);
    expect_message(&client, WS_OPCODE_TEXT, "hello", 5);
    ck_assert_int_eq(client_send_close(&client, WS_CLOSE_NORMAL_CLOSURE, ""), 0);
    expect_close(&client, WS_CLOSE_NORMAL_CLOSURE);
    client_close(&client);
    char *refused = http_exchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    free(refused);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    expect_clean_exit(pid, 5000);

    const char *log = read_log(log_path);
    unlink(log_path);
    /* In: the request, "hello" (2 bytes of header, 4 of mask, 5 of payload)
     * and the close (2 + 4 + 2). Out: the 101 (129 bytes), "hello" (2 + 5)
     * and the close (2 + 2). */
    char expected[256];
    snprintf(expected, sizeof expected, "open 127.0.0.1:%d thread 1\n", ntohs(local.sin_port));
    ck_assert_msg(strstr(log, expected) != NULL, "no \"%s\" in the log:\n%s", expected, log);
    char request[512];
    int request_length = snprintf(request, sizeof request,
                                  "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                                  "Sec-WebSocket-Version: 13\r\n\r\n",
                                  port, CLIENT_KEY);
    snprintf(expected, sizeof expected,
             "close 127.0.0.1:%d thread 1: code 1000, %d bytes in, %d out, ", ntohs(local.sin_port),
             request_length + 11 + 8, 129 + 7 + 4);
    ck_assert_msg(strstr(log, expected) != NULL, "no \"%s\" in the log:\n%s", expected, log);
    ck_assert_msg(strstr(log, "thread 2: 400 not a WebSocket request") != NULL,
                  "no refusal line in the log:\n%s", log);
    /* Every line starts with the time: 2026-11-25T21:40:12.123Z. */
    int year, month, day, hour, minute, second, millisecond;
    ck_assert_int_eq(sscanf(log, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ ", &year, &month, &day, &hour,
                            &minute, &second, &millisecond),
                     7);
}
END_TEST

START_TEST(test_quiet_server_logs_nothing)
{
    char log_path[] = "/tmp/ws-test-log-XXXXXX";
    int log_fd = mkstemp(log_path);
    ck_assert_int_ge(log_fd, 0);
    close(log_fd);
    int port;
    static const char *const quiet[] = {"--quiet", NULL};
    pid_t pid = server_start_with(&port, quiet, log_path);
    ck_assert_int_gt(pid, 0);
    struct client client;
    ck_assert_int_eq(client_open(&client, port), 0);
    close_cleanly(&client);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    expect_clean_exit(pid, 5000);
    const char *log = read_log(log_path);
    unlink(log_path);
    ck_assert_msg(log[0] == '\0', "--quiet, yet the log says:\n%s", log);
}
END_TEST

/* ==== Running out of file descriptors =================================== */

/* CPU time (user + system) the process has used, in clock ticks. */
static long cpu_ticks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *file = fopen(path, "r");
    ck_assert_ptr_nonnull(file);
    char text[1024];
    size_t length = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[length] = '\0';
    /* Fields 14 and 15; the command name (field 2) ends with ')'. */
    const char *after_name = strrchr(text, ')');
    long utime = 0;
    long stime = 0;
    ck_assert_int_eq(sscanf(after_name + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld",
                            &utime, &stime),
                     2);
    return utime + stime;
}

enum { DESCRIPTOR_LIMIT = 40, CROWD = 60 };

START_TEST(test_running_out_of_descriptors_backs_off_instead_of_spinning)
{
    int port;
    static const char *const arguments[] = {"--max-connections", "1000", NULL};
    pid_t pid = server_start_with(&port, arguments, "/dev/null");
    ck_assert_int_gt(pid, 0);
    /* The server may now open only 40 files: fewer than the clients below. */
    struct rlimit limit = {DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT};
    ck_assert_int_eq(prlimit(pid, RLIMIT_NOFILE, &limit, NULL), 0);

    static struct client crowd[CROWD];
    for (int i = 0; i < CROWD; i++)
        ck_assert_int_eq(client_connect(&crowd[i], port), 0);
    sleep_milliseconds(300);
    long before = cpu_ticks(pid);
    sleep_milliseconds(1000);
    long used = cpu_ticks(pid) - before;
    ck_assert_msg(used < 20,
                  "the server used %ld of 100 clock ticks in 1 s while out of file "
                  "descriptors: it spins",
                  used);

    for (int i = 0; i < CROWD; i++)
        client_close(&crowd[i]);
    sleep_milliseconds(300); /* the threads see the ends of their streams */
    struct client client;
    ck_assert_int_eq(client_open(&client, port), 0);
    echo_or_fail(&client, "served again");
    close_cleanly(&client);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    expect_clean_exit(pid, 5000);
}
END_TEST

/* ==== The suite ========================================================= */

static Suite *reliability_suite(void)
{
    Suite *suite = suite_create("reliability");

    TCase *slow = tcase_with_server(suite, "handshake timeout", WITH_HANDSHAKE_TIMEOUT, 30);
    tcase_add_test(slow, test_request_that_never_completes_gets_408);
    tcase_add_test(slow, test_request_sent_a_byte_at_a_time_still_times_out);

    TCase *crowd = tcase_with_server(suite, "a thousand slow clients", WITH_HANDSHAKE_TIMEOUT, 30);
    tcase_set_tags(crowd, "many-threads"); /* so that make valgrind leaves it out */
    tcase_add_test(crowd, test_a_thousand_slow_clients_do_not_delay_a_good_one);

    TCase *keep_alive = tcase_with_server(suite, "keep-alive", WITH_PING_INTERVAL, 30);
    tcase_add_test(keep_alive, test_idle_connection_is_pinged);
    tcase_add_test(keep_alive, test_peer_that_answers_pings_stays_connected);
    tcase_add_test(keep_alive, test_peer_that_stops_answering_is_closed_with_1001);

    TCase *limit = tcase_with_server(suite, "connection limit", WITH_TWO_CONNECTIONS_AT_MOST, 30);
    tcase_add_test(limit, test_client_over_the_limit_gets_503_with_retry_after);

    TCase *burst =
        tcase_with_server(suite, "a burst over the limit", WITH_TEN_CONNECTIONS_AT_MOST, 30);
    tcase_set_tags(burst, "many-threads");
    tcase_add_test(burst, test_a_burst_over_the_limit_is_refused_without_stalling_the_accept_loop);

    TCase *size = tcase_with_server(suite, "message size limit", WITH_MAX_MESSAGE_1000, 30);
    tcase_add_test(size, test_frame_announcing_too_much_gets_1009_before_its_payload);
    tcase_add_test(size, test_message_growing_past_the_limit_in_fragments_gets_1009);
    tcase_add_test(size, test_message_at_the_limit_is_echoed);

    TCase *origin = tcase_with_server(suite, "origin allow-list", WITH_TWO_ALLOWED_ORIGINS, 30);
    tcase_add_test(origin, test_allowed_origins_are_accepted);
    tcase_add_test(origin, test_other_origins_get_403);
    tcase_add_test(origin, test_request_without_origin_is_not_from_a_browser_and_is_accepted);

    /* These start and stop their own servers. */
    TCase *shutdown = tcase_create("graceful shutdown");
    tcase_set_timeout(shutdown, 30);
    tcase_add_test(shutdown, test_shutdown_echoes_every_message_received_before_it_then_sends_1001);
    tcase_add_test(shutdown, test_shutdown_closes_every_idle_connection_with_1001_and_exits_0);
    tcase_add_test(shutdown, test_shutdown_cuts_off_a_client_that_never_answers_after_the_timeout);
    suite_add_tcase(suite, shutdown);

    TCase *logging = tcase_create("logging");
    tcase_set_timeout(logging, 30);
    tcase_add_test(logging,
                   test_each_connection_logs_one_line_when_it_opens_and_one_when_it_closes);
    tcase_add_test(logging, test_quiet_server_logs_nothing);
    suite_add_tcase(suite, logging);

    TCase *descriptors = tcase_create("out of file descriptors");
    tcase_set_timeout(descriptors, 30);
    tcase_add_test(descriptors, test_running_out_of_descriptors_backs_off_instead_of_spinning);
    suite_add_tcase(suite, descriptors);
    return suite;
}

int main(void)
{
    return run_suite(reliability_suite());
}
