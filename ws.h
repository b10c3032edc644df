/* ws.h -- a small WebSocket (RFC 6455) server library.
 *
 * This file plays the part that System.Net.WebSockets plays in the article
 * "How to create a WebSocket server in dotnet": it reads the HTTP request,
 * performs the opening handshake, and then lets the application receive and
 * send messages with three calls that mirror .NET's:
 *
 *     ReceiveAsync  ->  ws_receive()
 *     SendAsync     ->  ws_send()
 *     CloseAsync    ->  ws_close()
 *
 * Like ReceiveAsync, ws_receive() answers pings, takes part in the closing
 * handshake and checks every frame against the protocol by itself, so the
 * application (notifier.c) never sees a control frame or a malformed one.
 *
 * The file has two parts. The first is for the application and the host
 * (server.c): the three calls above, and the calls that take a client from a
 * socket to a connection. The second holds the helpers they are built from
 * (frame headers, masking, UTF-8, the accept key), public so that the tests,
 * the fuzzers and the tutorial can use them one at a time.
 *
 * One convention for errors, everywhere: a function that can fail returns -1
 * (or NULL, if it returns a pointer) and sets errno; the request functions
 * also say in *refusal how to answer the client. Otherwise it returns 0, or a
 * size where it says so. A function returning bool answers a question and
 * cannot fail; so cannot a void one.
 *
 * Ownership: a struct ws belongs to the one thread that runs its connection;
 * no two threads may use the same one at once.
 */
#ifndef WS_H
#define WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ==== Limits ============================================================ */

/* The request line and headers together may not be longer than this. A client
 * that sends more gets "431 Request Header Fields Too Large", so a client can
 * never make us buffer without end. */
#define WS_MAX_REQUEST_SIZE 8192
#define WS_MAX_HEADERS      64

/* RFC 6455 §5.5: a control frame carries at most 125 bytes of payload. A close
 * frame spends 2 of them on the status code, which leaves 123 for the reason. */
#define WS_MAX_CONTROL_PAYLOAD 125
#define WS_MAX_CLOSE_REASON    123

/* The largest frame header: 2 bytes, 8 bytes of extended length, 4 of mask. */
#define WS_MAX_FRAME_HEADER 14

/* ==== Names from the RFC ================================================ */

/* RFC 6455 §5.2 and §11.8: the frame opcodes. */
enum ws_opcode {
    WS_OPCODE_CONTINUATION = 0x0,
    WS_OPCODE_TEXT = 0x1,
    WS_OPCODE_BINARY = 0x2,
    WS_OPCODE_CLOSE = 0x8,
    WS_OPCODE_PING = 0x9,
    WS_OPCODE_PONG = 0xA,
};

/* The kind of message a chunk belongs to, like .NET's WebSocketMessageType. */
enum ws_message_type {
    WS_MESSAGE_TEXT,
    WS_MESSAGE_BINARY,
    WS_MESSAGE_CLOSE,
};

/* RFC 6455 §7.4.1: close status codes. WS_CLOSE_NONE is not on the wire: it is
 * our "CloseStatus.HasValue == false". 1005 and 1006 are never sent either:
 * they are what an endpoint reports when there was no status, or no close
 * frame at all. */
enum ws_close_status {
    WS_CLOSE_NONE = 0,
    WS_CLOSE_NORMAL_CLOSURE = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED_DATA = 1003,
    WS_CLOSE_NO_STATUS_RECEIVED = 1005,
    WS_CLOSE_ABNORMAL_CLOSURE = 1006,
    WS_CLOSE_INVALID_PAYLOAD_DATA = 1007,
    WS_CLOSE_POLICY_VIOLATION = 1008,
    WS_CLOSE_MESSAGE_TOO_BIG = 1009,
    WS_CLOSE_MANDATORY_EXTENSION = 1010,
    WS_CLOSE_INTERNAL_ERROR = 1011,
};

/* Where a connection is in its life, named as .NET's WebSocketState names it.
 * The closing handshake (RFC 6455 §7) takes it from OPEN to CLOSED through
 * CLOSE_SENT (we closed first) or CLOSE_RECEIVED (the peer did); ABORTED
 * means the connection failed, and every later call on it fails with errno
 * ECONNABORTED. */
enum ws_state {
    WS_STATE_OPEN,
    WS_STATE_CLOSE_SENT,
    WS_STATE_CLOSE_RECEIVED,
    WS_STATE_CLOSED,
    WS_STATE_ABORTED,
};

/* ######################################################################## */
/* Part 1: for the application and the host                                 */
/* ######################################################################## */

/* ==== Settings ========================================================== */

/* What the host decides for every connection: the limits and timers that keep
 * one client from holding a thread, or memory, forever. 0 turns each limit
 * and timer off. The host's command-line options fill it in (server.c), as
 * ASP.NET Core's WebSocketOptions do. */
struct ws_settings {
    /* A message larger than this is failed with 1009 Message Too Big
     * (RFC 6455 §7.4.1) as soon as a frame header announces it. */
    uint64_t max_message_size;

    /* --trace: when not NULL, called with one line of text for each line of
     * the 101 response and for every frame, received ("<< ...") or sent
     * (">> ..."), as ws_describe_frame() draws it. context is passed back
     * unchanged. */
    void (*trace)(void *context, const char *line);
    void *trace_context;

    /* The whole HTTP request must arrive within this time, or the client is
     * answered "408 Request Timeout": a client that sends its headers a byte
     * at a time ("slowloris") cannot keep its thread waiting. */
    int handshake_timeout_seconds;

    /* Keep-alive: after this long without a byte from the peer we send a ping
     * (RFC 6455 §5.5.2); when another interval passes with still no byte, the
     * peer is gone (a half-open TCP connection, say), and we close with 1001.
     * A peer that reads nothing for two intervals makes our send fail too. */
    int ping_interval_seconds;

    /* A file descriptor that becomes readable when the server is shutting
     * down (the read end of a pipe), or -1. Every connection watches it while
     * it waits, and then closes with 1001 Going Away as soon as it is between
     * two messages with nothing more received. */
    int stop_fd;

    /* --permessage-deflate: accept a client's offer of compression (RFC
     * 7692), and then compress every message we send. Off by default: a
     * connection that agrees to it holds zlib's state for its whole life,
     * about 44 KiB more than the 16 KiB an echoing connection costs without
     * (README, "Compression"). Node's ws leaves it off on servers for the
     * same reason. */
    bool permessage_deflate;
};

/* ==== The transport: TCP, or TLS over TCP ============================== */

/* A connection's bytes travel over a plain TCP socket (ws://), or through TLS
 * over one (wss://, RFC 6455 §11.1.2): TLS encrypts them and proves to the
 * client that it talks to the server its URL names. Every function below
 * takes a struct ws_transport, and only the first section of ws.c looks at
 * which kind it is: the HTTP request, the frames and the closing handshake
 * above it are the same bytes either way. */

/* The server's certificate and private key, loaded once at start and shared
 * by every connection (OpenSSL's SSL_CTX, which threads may share). */
struct ws_tls;

/* Loads a certificate chain and its private key (PEM files) for TLS 1.2 and
 * newer, with OpenSSL's default choice of ciphers. Returns NULL when they
 * cannot be used, after writing why into error (at most error_size bytes):
 * a server should say so at start rather than fail at its first client. */
struct ws_tls *ws_tls_load(const char *certificate_file, const char *key_file, char *error,
                           size_t error_size);

void ws_tls_free(struct ws_tls *tls);

struct ssl_st;     /* OpenSSL's SSL: one TLS session */
struct ws_refusal; /* below, with the HTTP request */

struct ws_transport {
    struct ssl_st *tls; /* the TLS session over fd, or NULL for plain TCP */
    /* When the client connected (CLOCK_MONOTONIC, in milliseconds): the TLS
     * handshake and the HTTP request share one handshake timeout. */
    int64_t opened_at;
    int fd; /* the TCP socket */
    /* A send that cannot go on for this long fails (0: it waits for ever);
     * ws_accept() sets it from the keep-alive interval. */
    int send_timeout_milliseconds;
};

/* Makes transport a plain TCP connection over fd, opened now. */
void ws_transport_init(struct ws_transport *transport, int fd);

/* Runs the server's side of the TLS handshake on a plain transport, which
 * then carries everything through TLS. The handshake must end within
 * settings->handshake_timeout_seconds of the connection's start (a client
 * that connects and never says hello is cut off), and stops when
 * settings->stop_fd becomes readable. Returns 0, or -1 with *refusal: status
 * 400 when the client sent plain HTTP (a ws:// or http:// URL for this
 * port), which ws_refuse() answers in plain text, as the client expects;
 * status 0 when there is nobody to answer (the handshake failed or timed
 * out: the reason says which). */
int ws_start_tls(struct ws_transport *transport, struct ws_tls *tls,
                 const struct ws_settings *settings, struct ws_refusal *refusal);

/* The TLS version and cipher of a TLS transport, as "TLSv1.3
 * TLS_AES_256_GCM_SHA384", or "" for plain TCP; for the log and --trace. */
const char *ws_transport_security(const struct ws_transport *transport, char *out, size_t size);

/* Ends a transport: frees its TLS session and closes its socket. */
void ws_transport_close(struct ws_transport *transport);

/* ==== The HTTP request (RFC 9112) ======================================= */

struct ws_header {
    const char *name;
    const char *value;
};

/* One HTTP request as read from the socket. Every string points into data[],
 * so the struct owns everything it refers to. Bytes that arrived after the
 * blank line (a client may send its first frame without waiting) are kept in
 * data[] too, from header_length to length. */
struct ws_request {
    char data[WS_MAX_REQUEST_SIZE + 1];
    size_t length;
    size_t header_length;
    const char *method;
    const char *target;
    const char *version;
    struct ws_header headers[WS_MAX_HEADERS];
    size_t header_count;
};

/* Why a request was refused: the HTTP status to answer with and a short
 * sentence for the body. status 0 means "say nothing": the client is gone.
 * retry_after_seconds, when not 0, is sent as a Retry-After header (RFC 9110
 * §10.2.3), which tells a client refused with 503 when to come back. */
struct ws_refusal {
    int status;
    const char *reason;
    int retry_after_seconds;
};

/* Reads one HTTP request from transport, up to and including the blank line,
 * and parses it. Returns 0, or -1 with *refusal saying why: 431 for a request
 * larger than WS_MAX_REQUEST_SIZE, 400 for a malformed one, 408 when the
 * whole request has not arrived within settings->handshake_timeout_seconds
 * of the connection's start, 503 when settings->stop_fd says the server is
 * shutting down, 0 when the connection closed or failed first. */
int ws_read_request(struct ws_transport *transport, struct ws_request *request,
                    struct ws_refusal *refusal, const struct ws_settings *settings);

/* The value of the first header called name (case-insensitive), or NULL. */
const char *ws_request_header(const struct ws_request *request, const char *name);

/* True when the request is a valid WebSocket opening handshake (RFC 6455
 * §4.2.1). When it is not, *refusal says how to answer: 426 for a version
 * other than 13, 400 for everything else. */
bool ws_is_websocket_request(const struct ws_request *request, struct ws_refusal *refusal);

/* Answers a refused request with its status, a plain-text body saying why
 * (the reason, of any length), and "Connection: close", then ends the
 * connection gently (it waits up to 2 s for the client to leave). request
 * may be NULL. Returns 0, or -1 if the answer could not be sent. */
int ws_refuse(struct ws_transport *transport, const struct ws_request *request,
              const struct ws_refusal *refusal);

/* The same answer, for a caller that cannot wait for one client: the accept
 * loop, refusing a client it has no room for, over plain TCP (a TLS client
 * would need a handshake first). The request is not read, and
 * nothing waits: the answer is sent and our side of the connection shut down.
 * The caller must not close fd at once: whatever the client sent and we did
 * not read would make the kernel answer with a reset, which can destroy the
 * answer before the client reads it. It should read and discard until the
 * client leaves (server.c has a thread for that), then close. Returns 0 or -1. */
int ws_refuse_without_waiting(int fd, const struct ws_refusal *refusal);

/* Answers a plain HTTP request with "200 OK" and body (with
 * "Connection: close"), for the browser client page (--client-page).
 * Returns 0, or -1 if it could not be sent (EINVAL for a content_type with a
 * control character in it). */
int ws_send_page(struct ws_transport *transport, const struct ws_request *request,
                 const char *content_type, const char *body, size_t length);

/* ==== A WebSocket connection ============================================ */

/* The state of one connection. Its fields live in ws.c: the application only
 * ever holds a pointer, as it only ever holds a WebSocket object in .NET. */
struct ws;

/* What one ws_receive() delivered, like .NET's WebSocketReceiveResult. */
struct ws_receive_result {
    size_t count;                      /* bytes placed in the buffer */
    enum ws_message_type message_type; /* text, binary, or close */
    enum ws_close_status close_status; /* WS_CLOSE_NONE until the peer closes */
    bool end_of_message;               /* this chunk is the last of its message */
    char close_description[WS_MAX_CLOSE_REASON + 1];
};

/* Completes the opening handshake for a request that ws_is_websocket_request()
 * accepted: sends "101 Switching Protocols" and returns a new connection,
 * OPEN. With settings->permessage_deflate, it first takes the client's first
 * acceptable permessage-deflate offer, if any (ws_negotiate_deflate()).
 * Returns NULL with *refusal saying how to answer: 400 when the request's
 * Sec-WebSocket-Extensions is not an extension list (errno EINVAL), 0 when
 * the 101 could not be sent (errno says why). The caller still owns the
 * transport, and closes it after ws_free(). The connection keeps a copy of
 * *settings. */
struct ws *ws_accept(struct ws_transport *transport, const struct ws_request *request,
                     const struct ws_settings *settings, struct ws_refusal *refusal);

/* Receives the next chunk of the current message into buf (at most len bytes,
 * len > 0) and describes it in *result. A compressed message (RFC 7692) is
 * delivered inflated; a chunk may then hold no bytes at all. Pings are
 * answered and pongs skipped on the way. When the peer sends a close frame,
 * result->close_status is set (WS_CLOSE_NO_STATUS_RECEIVED for an empty one),
 * the state becomes CLOSE_RECEIVED, and the caller should answer with
 * ws_close(); asked again, ws_receive() reports the same close. When the
 * server is shutting down, ws_receive() closes with 1001 itself, between two
 * messages, and reports the peer's answer the same way. Returns 0, or -1 when
 * the connection failed (ABORTED): the peer broke the protocol or a limit (it
 * has been sent the right close code; errno EPROTO), stopped answering
 * (ETIMEDOUT), or was lost without a close frame (1006; errno says how). */
int ws_receive(struct ws *ws, void *buf, size_t len, struct ws_receive_result *result);

/* Sends len bytes as one frame of a text or binary message, while the state
 * is OPEN or CLOSE_RECEIVED. When end_of_message is false, the message goes on
 * in the next ws_send(), whose frame will be a continuation frame. When
 * permessage-deflate was agreed, the bytes are compressed instead, and go out
 * in as many frames as their compressed form fills (perhaps none yet, for a
 * chunk that does not end the message). A frame that does not end its
 * message may wait in the kernel for the next one (MSG_MORE), until the next
 * ws_send() or until ws_receive() waits. Returns 0, or -1: EPIPE once our
 * close frame is sent, EINVAL for WS_MESSAGE_CLOSE. */
int ws_send(struct ws *ws, const void *buf, size_t len, enum ws_message_type type,
            bool end_of_message);

/* Runs the closing handshake (RFC 6455 §7.1.2): sends a close frame with
 * status and description (an empty close frame for WS_CLOSE_NO_STATUS_RECEIVED)
 * if none was sent yet, waits for the peer's close frame if none came yet, and
 * then ends the TCP connection from our side: the state is CLOSED. description
 * may be NULL. Returns 0, or -1: EINVAL if the status or description cannot
 * be sent (the connection stays as it was), or the connection failed. */
int ws_close(struct ws *ws, enum ws_close_status status, const char *description);

/* Where the connection is in its life (see enum ws_state). */
enum ws_state ws_get_state(const struct ws *ws);

/* What a connection did, for the host's log line. */
struct ws_stats {
    uint64_t bytes_received; /* every byte, the HTTP request included */
    uint64_t bytes_sent;     /* every byte, the 101 response included */
    /* The status of the close frame we sent (our answer to the peer's, or the
     * reason we failed the connection), WS_CLOSE_NO_STATUS_RECEIVED for an
     * empty one, or WS_CLOSE_ABNORMAL_CLOSURE when we sent none. */
    enum ws_close_status close_status;
};

void ws_get_stats(const struct ws *ws, struct ws_stats *stats);

/* Frees a connection made by ws_accept(). It does not close the socket. */
void ws_free(struct ws *ws);

/* Frees what the library keeps for the calling thread: OpenSSL's per-thread
 * state, which OpenSSL would otherwise free only as the thread exits. Call
 * it at the end of a thread that used ws_accept(). */
void ws_thread_done(void);

/* ######################################################################## */
/* Part 2: the helpers the calls above are built from, public so that the   */
/* tests, the fuzzers and the tutorial can use them one at a time           */
/* ######################################################################## */

/* ==== Parsing a request ================================================= */

/* Where the header block in data ends: the index just past the blank line,
 * or 0 if it has not arrived yet. Lines end in CRLF; a bare LF is accepted
 * too (RFC 9112 §2.2), which helps students typing requests into netcat. */
size_t ws_end_of_headers(const char *data, size_t length);

/* Parses the request line and headers in request->data (the first
 * request->length bytes, which must hold the whole header block). Returns 0,
 * or -1 with *refusal (400, or 431 for too many headers) when it is
 * malformed: control characters are refused anywhere (RFC 9110 §5.5). */
int ws_parse_request(struct ws_request *request, struct ws_refusal *refusal);

/* The reason phrase of an HTTP status we answer with: "Bad Request" for 400. */
const char *ws_status_text(int status);

/* RFC 6455 §4.2.2: the Sec-WebSocket-Accept value for a Sec-WebSocket-Key:
 * base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")). accept must
 * have room for 29 bytes (28 characters and the terminating NUL). Returns 0,
 * or -1 (ENOMEM) when OpenSSL cannot compute it. */
int ws_accept_key(const char *key, char accept[29]);

/* ==== Frames (RFC 6455 §5.2) ============================================ */

struct ws_frame_header {
    bool fin;
    uint8_t rsv; /* RSV1..RSV3 as a 3-bit number */
    enum ws_opcode opcode;
    bool masked;
    uint8_t mask_key[4];
    uint64_t payload_length;
};

/* Decodes a frame header from the first available bytes. Returns the header's
 * size in bytes (2 to 14), 0 if more bytes are needed, or -1 if the header can
 * never be valid (a 64-bit length with its top bit set, RFC 6455 §5.2). */
int ws_decode_frame_header(const uint8_t *bytes, size_t available, struct ws_frame_header *header);

/* Encodes header into out and returns its size in bytes (2 to 14), using the
 * shortest of the three length forms. */
size_t ws_encode_frame_header(const struct ws_frame_header *header,
                              uint8_t out[WS_MAX_FRAME_HEADER]);

/* RFC 6455 §5.3: XORs len bytes with the 4-byte mask key. offset is how many
 * payload bytes of this frame came before these ones, so a payload can be
 * unmasked a piece at a time. Masking and unmasking are the same operation. */
void ws_mask(uint8_t *bytes, size_t len, const uint8_t key[4], uint64_t offset);

/* Describes a frame in one line, as a student would draw it (RFC 6455 §5.2):
 *
 *   FIN=1 RSV=000 opcode=1 (text) MASK=1 key=37fa213d length=5 (7-bit) "Hello"
 *
 * header_size (2 to 14) tells which of the three length forms was used: the
 * 7-bit length alone, or 126 and 16 bits, or 127 and 64 bits. payload holds
 * the first available bytes of the (unmasked) payload, which are shown as
 * text if text is true (escaped as ws_escape() does), as a close code and
 * reason for a close frame, or in hex, cut after a few. Writes at most size
 * bytes into out. */
void ws_describe_frame(const struct ws_frame_header *header, size_t header_size,
                       const uint8_t *payload, size_t available, bool text, char *out, size_t size);

/* Writes length bytes into out as text that is safe to print on a terminal:
 * printable ASCII as it is, and every other byte (an escape sequence, a byte
 * of UTF-8), the double quote and the backslash as \xNN. Writes at most size
 * bytes, the terminating NUL included, and stops early rather than cut an
 * escape in half. Returns how many of the bytes it wrote. */
size_t ws_escape(const uint8_t *bytes, size_t length, char *out, size_t size);

/* ==== permessage-deflate (RFC 7692) ===================================== */

/* RFC 7692 §6: RSV1 marks the first frame of a compressed message. */
#define WS_RSV1 0x4

/* What we agreed with a client that offered permessage-deflate (RFC 7692
 * §7.1): the windows each side compresses with, whether each side starts
 * every message afresh, and which window sizes the response must name. */
struct ws_deflate_params {
    uint8_t server_window_bits;      /* the window we deflate with: 9 to 12 */
    uint8_t client_window_bits;      /* the window the client deflates with: 8 to 15 */
    bool server_no_context_takeover; /* we reset our compressor after each message */
    bool client_no_context_takeover; /* the client does; so we reset our decompressor */
    bool name_server_window_bits;    /* the offer had server_max_window_bits */
    bool name_client_window_bits;    /* the offer had client_max_window_bits */
};

/* The longest Sec-WebSocket-Extensions value ws_format_deflate_response()
 * writes, with its terminating NUL. */
#define WS_MAX_DEFLATE_RESPONSE 160

/* Reads every Sec-WebSocket-Extensions header of request (RFC 6455 §9.1: a
 * comma-separated list of extensions, each with ";"-separated parameters)
 * and takes the first permessage-deflate offer we can accept, skipping other
 * extensions and offers with an unknown or repeated parameter or a value
 * out of range. Returns 1 when it took one (and filled *params), 0 when there
 * was none, or -1 with *refusal (400) when a header is not an extension list. */
int ws_negotiate_deflate(const struct ws_request *request, struct ws_deflate_params *params,
                         struct ws_refusal *refusal);

/* Writes the Sec-WebSocket-Extensions value that accepts an offer, such as
 * "permessage-deflate; server_no_context_takeover; client_max_window_bits=12". */
void ws_format_deflate_response(const struct ws_deflate_params *params,
                                char out[WS_MAX_DEFLATE_RESPONSE]);

/* ==== UTF-8 (RFC 6455 §5.6, §8.1) ======================================= */

/* An incremental UTF-8 validator: feed it a message in pieces, split anywhere,
 * even inside a character. Zero-initialise it before the first piece. */
struct ws_utf8 {
    uint8_t bytes_needed; /* continuation bytes still to come */
    uint8_t lowest_next;  /* the range the next continuation byte must be in */
    uint8_t highest_next;
};

/* Checks the next len bytes. Returns false as soon as the bytes so far can no
 * longer be the start of valid UTF-8. */
bool ws_utf8_validate(struct ws_utf8 *state, const uint8_t *bytes, size_t len);

/* True when the bytes fed so far end on a character boundary. */
bool ws_utf8_is_complete(const struct ws_utf8 *state);

/* ==== Close codes (RFC 6455 §7.4) ======================================= */

/* True for a status code that may appear in a close frame on the wire. */
bool ws_is_valid_close_status(unsigned status);

#endif
