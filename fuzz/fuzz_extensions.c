/* fuzz_extensions.c -- libFuzzer target: the Sec-WebSocket-Extensions
 * parser and the permessage-deflate negotiation (RFC 7692 §5, §7.1; ws.c,
 * the end of section 3) on any header values a client may send.
 *
 * The input is split at its first newline into the values of two
 * Sec-WebSocket-Extensions headers. Besides crashes, it checks what
 * ws_negotiate_deflate() promises: a refusal is a 400 with a reason; an
 * agreement has windows in range; and the response we would send, offered
 * back to us, is accepted with the same parameters (it is a valid offer that
 * asks for nothing we refuse). Run with "make fuzz". */
#include "../ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Builds a request with the two header values and parses it. Returns false
 * when the values cannot be header values at all (a control character). */
static bool make_request(struct ws_request *request, const char *first, const char *second)
{
    int length = snprintf(request->data, sizeof request->data,
                          "GET / HTTP/1.1\r\nSec-WebSocket-Extensions: %s\r\n"
                          "Sec-WebSocket-Extensions: %s\r\n\r\n",
                          first, second);
    if (length < 0 || (size_t)length >= sizeof request->data)
        return false;
    request->length = (size_t)length;
    struct ws_refusal refusal;
    return ws_parse_request(request, &refusal) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char text[4097];
    static struct ws_request request;
    if (size > 4096)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *newline = strchr(text, '\n');
    if (newline != NULL)
        *newline = '\0';
    if (!make_request(&request, text, newline != NULL ? newline + 1 : ""))
        return 0;
    struct ws_deflate_params params;
    struct ws_refusal refusal = {0, NULL, 0};
    int result = ws_negotiate_deflate(&request, &params, &refusal);
    if (result < 0 && (refusal.status != 400 || refusal.reason == NULL))
        abort();
    if (result <= 0)
        return 0;
    if (result != 1 || params.server_window_bits < 9 || params.server_window_bits > 12 ||
        params.client_window_bits < 8 || params.client_window_bits > 15)
        abort();
    char response[WS_MAX_DEFLATE_RESPONSE];
    ws_format_deflate_response(&params, response);
    struct ws_deflate_params again;
    if (!make_request(&request, response, "") ||
        ws_negotiate_deflate(&request, &again, &refusal) != 1 ||
        memcmp(&again, &params, sizeof params) != 0)
        abort();
    return 0;
}
