/* fuzz_utf8.c -- libFuzzer target: ws.c's incremental UTF-8 validator
 * (section 6) against reference_utf8.h, on the input whole and on the input
 * cut into pieces at places the input itself chooses (its first byte), as a
 * text message arrives in frames and reads of any size. Run with "make fuzz". */
#include "../ws.h"
#include "reference_utf8.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t piece = (size_t)data[0] % 7 + 1; /* 1 to 7 bytes per piece */
    const uint8_t *text = data + 1;
    size_t length = size - 1;
    bool expected = reference_utf8_is_valid(text, length);

    struct ws_utf8 whole = {0};
    bool valid_whole = ws_utf8_validate(&whole, text, length) && ws_utf8_is_complete(&whole);

    struct ws_utf8 pieces = {0};
    bool valid_pieces = true;
    for (size_t i = 0; i < length && valid_pieces; i += piece) {
        size_t count = length - i < piece ? length - i : piece;
        valid_pieces = ws_utf8_validate(&pieces, text + i, count);
    }
    valid_pieces = valid_pieces && ws_utf8_is_complete(&pieces);

    if (valid_whole != expected || valid_pieces != expected)
        abort();
    return 0;
}
