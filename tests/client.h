/* client.h -- what the tests need to drive the real server: start and stop
 * it, and a small WebSocket client that can also break every rule on purpose
 * (unmasked frames, reserved bits, bytes sent a few at a time).
 *
 * Every function fails rather than waits forever: sockets have a receive
 * timeout of CLIENT_TIMEOUT_SECONDS.
 */
#ifndef TEST_CLIENT_H
#define TEST_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>

#include "../ws.h"

#define CLIENT_TIMEOUT_SECONDS 3

/* ==== The server under test ============================================= */

/* Starts ./server (or $SERVER) on 127.0.0.1 with a port the kernel picks,
 * its log (standard error) going to /dev/null, and returns its pid, with the
 * port in *port, or -1. */
pid_t server_start(int *port);

/* The same with more command-line arguments (a NULL-terminated list, or
 * NULL), and the server's standard error written to the file log_path
 * (NULL: the test's own). */
pid_t server_start_with(int *port, const char *const *arguments, const char *log_path);

/* Stops a server started by server_start(), by its pid (SIGTERM, and SIGKILL
 * if it has not exited 10 s later), and reaps it. Returns the wait status. */
int server_stop(pid_t pid);

/* Waits up to milliseconds for the server to exit, and reaps it. Returns the
 * wait status, or -1 if it is still running. */
int server_wait(pid_t pid, int milliseconds);

/* ==== A test client ===================================================== */

/* Received bytes not yet used are inbox[in_start] .. inbox[in_end - 1]. The
 * inbox grows: while the client waits to send, it keeps receiving, as an
 * asynchronous client does, or a large echo would deadlock both sides. */
struct client {
    int fd;
    uint8_t *inbox;
    size_t capacity;
    size_t in_start;
    size_t in_end;
    bool at_eof; /* the server ended its side of the connection */
};

/* A frame as the server sent it; payload is malloc'ed (free with frame_free). */
struct frame {
    bool fin;
    uint8_t rsv;
    uint8_t opcode;
    bool masked;
    uint64_t length;
    uint8_t *payload;
};

/* Opens a TCP connection to 127.0.0.1:port. Returns 0 or -1. */
int client_connect(struct client *client, int port);

/* The Sec-WebSocket-Key every test client sends. */
#define CLIENT_KEY "dGhlIHNhbXBsZSBub25jZQ=="

/* Connects and sends a WebSocket request, with extra_headers (each line
 * ending in CRLF) after the usual ones, and reads the response's status line
 * and headers into response (NUL-terminated, cut at size - 1 bytes). Returns
 * 0 or -1; whatever the status, client->fd stays open. */
int client_handshake(struct client *client, int port, const char *extra_headers, char *response,
                     size_t size);

/* Connects and performs the opening handshake, checking the server's 101 and
 * its Sec-WebSocket-Accept. Returns 0 or -1. */
int client_open(struct client *client, int port);

void client_close(struct client *client);

/* Sends bytes as they are, receiving into the inbox whenever the socket is
 * not ready for more. chop > 0 sends them chop bytes per write, with
 * TCP_NODELAY, the way Autobahn's "chopped" cases do. */
int client_send_raw(struct client *client, const void *bytes, size_t length, size_t chop);

/* Sends one frame, masked with a random key (unless masked is false). */
int client_send_frame_ex(struct client *client, bool fin, uint8_t rsv, uint8_t opcode, bool masked,
                         const void *payload, size_t length, size_t chop);

/* The usual case: a masked frame with no reserved bits, sent in one write. */
int client_send_frame(struct client *client, bool fin, uint8_t opcode, const void *payload,
                      size_t length);

/* A close frame with no payload at all, where a status code would go. */
#define CLOSE_EMPTY (-1)

/* Sends a close frame with a status code (or CLOSE_EMPTY) and a reason. */
int client_send_close(struct client *client, int code, const char *reason);

/* Reads one frame. Returns 0, or -1 on timeout, error or end of stream. */
int client_read_frame(struct client *client, struct frame *frame);
void frame_free(struct frame *frame);

/* Reads one whole message: a text or binary frame and its continuations.
 * *opcode gets the first frame's opcode; control frames in between are an
 * error. Returns the payload (malloc'ed) with its size in *length, or NULL. */
uint8_t *client_read_message(struct client *client, uint8_t *opcode, size_t *length);

/* Reads frames until a whole text or binary message has arrived, collecting
 * the pongs that come in between: an echo streams, so the first fragment of
 * a message may come back before the pong of a ping sent after it. The
 * message goes into message (NUL-terminated, cut at size - 1 bytes), the
 * pongs' payloads into pongs[0] .. pongs[max_pongs - 1]. Returns the number
 * of pongs, or -1 when the connection failed or a frame came out of sequence. */
int client_read_message_and_pongs(struct client *client, char *message, size_t size,
                                  char pongs[][WS_MAX_CONTROL_PAYLOAD + 1], int max_pongs);

/* True when the server ended the connection: recv reports end of stream or a
 * reset within the timeout. */
bool client_wait_for_eof(struct client *client);

/* True when nothing arrives within milliseconds. */
bool client_nothing_within(struct client *client, int milliseconds);

/* Sends request, reads the whole response until the server closes, and
 * returns it as a malloc'ed string (NULL on failure). */
char *http_exchange(int port, const char *request, size_t length);

/* Fills buf with length pseudo-random bytes, or printable ASCII if text. */
void fill_payload(uint8_t *buf, size_t length, bool text, unsigned seed);

/* ==== Check test cases with a server ==================================== */

/* The port and pid of the server that the running TCase's fixture started. */
extern int test_server_port;
extern pid_t test_server_pid;

/* Creates a TCase called name, adds it to suite and returns it. Its server
 * is started once for the whole TCase, in the test runner (an unchecked
 * fixture), so each test also proves that the tests before it left the
 * server serving: ./server with server_arguments (a NULL-terminated list, or
 * NULL for none; the list must outlive the suite, so make it static), its log
 * going to /dev/null. After the last test it is stopped by pid with SIGTERM,
 * and run_suite() fails if it did not then exit with status 0. Each test of
 * the TCase times out after timeout_seconds. */
TCase *tcase_with_server(Suite *suite, const char *name, const char *const *server_arguments,
                         int timeout_seconds);

/* ==== Assertions for Check tests ======================================== */

/* Opens a WebSocket connection to the test server, or fails the test. */
void open_or_fail(struct client *client);

/* The next message is a text or binary message (opcode) with exactly this
 * payload; it may come in any number of frames. */
void expect_message(struct client *client, uint8_t opcode, const void *payload, size_t length);

/* The next frame is a pong with this payload. */
void expect_pong(struct client *client, const void *payload, size_t length);

/* The next frame is a close frame with this status code (or CLOSE_EMPTY),
 * and then the server ends the TCP connection. */
void expect_close(struct client *client, int code);

/* Sends close 1000 and expects it back: the connection ends cleanly. */
void close_cleanly(struct client *client);

/* Runs a whole Check suite and returns the process exit status: failure if
 * a test failed, or if a TCase's server did not exit cleanly at its end. */
int run_suite(Suite *suite);

#endif
