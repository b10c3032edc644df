/* fuzz_refusal.c -- libFuzzer target: the answers to plain HTTP requests
 * (ws_refuse() and ws_send_page(), ws.c section 2) with any reason and any
 * content type a program using the library may pass.
 *
 * The first input byte picks the status and whether the request was HEAD;
 * the rest is the reason (or the content type), of any length. The answer is
 * read back from the other end of a socketpair and must be whole: a status
 * line, a Content-Length that matches the body, and the reason as the body.
 * Issue 13 found a 1,099-byte reason overflowing a fixed buffer here. Run
 * with "make fuzz". */
#include "../ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const int STATUSES[] = {400, 403, 408, 426, 431, 503, 599};

/* Reads everything the server's end sent, until it closes. */
static size_t read_all(int fd, char *out, size_t size)
{
    size_t length = 0;
    ssize_t got;
    while (length < size - 1 && (got = recv(fd, out + length, size - 1 - length, 0)) > 0)
        length += (size_t)got;
    out[length] = '\0';
    return length;
}

/* Checks that response is a whole answer whose body is body (or, for a HEAD
 * request, that it has no body but announces body's length). */
static void check_answer(const char *response, size_t length, const char *body, size_t body_length,
                         bool is_head)
{
    const char *end_of_head = strstr(response, "\r\n\r\n");
    const char *length_header = strstr(response, "\r\nContent-Length: ");
    if (strncmp(response, "HTTP/1.1 ", 9) != 0 || end_of_head == NULL || length_header == NULL ||
        length_header > end_of_head || strtoull(length_header + 18, NULL, 10) != body_length)
        abort();
    size_t head_length = (size_t)(end_of_head + 4 - response);
    size_t expected = is_head ? 0 : body_length;
    if (length - head_length != expected || memcmp(end_of_head + 4, body, expected) != 0)
        abort();
}

static void fuzz_refuse(int status, bool is_head, const char *reason)
{
    static struct ws_request request;
    request.method = is_head ? "HEAD" : "GET";
    int ends[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, ends) != 0)
        return;
    shutdown(ends[1], SHUT_WR); /* so that the answer's linger ends at once */
    struct ws_refusal refusal = {status, reason, status == 503 ? 5 : 0};
    struct ws_transport transport;
    ws_transport_init(&transport, ends[0]);
    if (ws_refuse(&transport, &request, &refusal) != 0)
        abort();
    close(ends[0]);
    static char response[16384];
    size_t length = read_all(ends[1], response, sizeof response);
    close(ends[1]);
    static char body[8192];
    size_t body_length = (size_t)snprintf(body, sizeof body, "%s\n", reason);
    check_answer(response, length, body, body_length, is_head);
}

static void fuzz_send_page(bool is_head, const char *content_type)
{
    static struct ws_request request;
    request.method = is_head ? "HEAD" : "GET";
    int ends[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, ends) != 0)
        return;
    shutdown(ends[1], SHUT_WR);
    struct ws_transport transport;
    ws_transport_init(&transport, ends[0]);
    int sent = ws_send_page(&transport, &request, content_type, "<p>page</p>", 11);
    close(ends[0]);
    static char response[16384];
    size_t length = read_all(ends[1], response, sizeof response);
    close(ends[1]);
    /* A content type with a line break or another control character would
     * let the caller's string write headers: it is refused, and nothing is
     * sent. Any other is sent as it is. */
    bool has_control = false;
    for (const char *c = content_type; *c != '\0'; c++)
        has_control |= ((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7F;
    if (has_control) {
        if (sent != -1 || length != 0)
            abort();
        return;
    }
    if (sent != 0 || strstr(response, content_type) == NULL)
        abort();
    check_answer(response, length, "<p>page</p>", 11, is_head);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    static char text[4097];
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0'; /* the text ends at its first NUL, as a C string does */
    int status = STATUSES[(data[0] & 0x7F) % (sizeof STATUSES / sizeof STATUSES[0])];
    bool is_head = (data[0] & 0x80) != 0;
    fuzz_refuse(status, is_head, text);
    fuzz_send_page(is_head, text);
    return 0;
}
