/* fuzz_request.c -- libFuzzer target: the HTTP request parser and the
 * handshake checks (ws.c sections 2 and 3) on any bytes a client may send.
 *
 * The input is what a client sent, cut at WS_MAX_REQUEST_SIZE as
 * ws_read_request() cuts it. Besides crashes (AddressSanitizer and
 * UndefinedBehaviorSanitizer are on), it checks what a parsed request
 * promises: every string points inside the buffer, and a refusal always has
 * a status and a reason. Run with "make fuzz". */
#include "../ws.h"

#include <stdlib.h>
#include <string.h>

static void check_inside(const struct ws_request *request, const char *text)
{
    if (text == NULL || text < request->data || text > request->data + request->length)
        abort();
}

static void check_refusal(const struct ws_refusal *refusal)
{
    if (refusal->reason == NULL ||
        (refusal->status != 400 && refusal->status != 426 && refusal->status != 431))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ws_request request;
    if (size > WS_MAX_REQUEST_SIZE)
        size = WS_MAX_REQUEST_SIZE;
    memcpy(request.data, data, size);
    request.length = size;
    struct ws_refusal refusal = {0, NULL, 0};
    if (ws_parse_request(&request, &refusal) != 0) {
        check_refusal(&refusal);
        return 0;
    }
    check_inside(&request, request.method);
    check_inside(&request, request.target);
    check_inside(&request, request.version);
    for (size_t i = 0; i < request.header_count; i++) {
        check_inside(&request, request.headers[i].name);
        check_inside(&request, request.headers[i].value);
    }
    if (request.header_length > request.length)
        abort();
    if (ws_is_websocket_request(&request, &refusal)) {
        char accept[29];
        if (ws_accept_key(ws_request_header(&request, "Sec-WebSocket-Key"), accept) != 0 ||
            strlen(accept) != 28)
            abort();
    } else {
        check_refusal(&refusal);
    }
    return 0;
}
