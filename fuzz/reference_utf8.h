/* reference_utf8.h -- a second UTF-8 validator for the fuzzers to compare
 * ws.c's against. It is written the other way round on purpose: it decodes
 * each character to its code point and then checks the rules on the number
 * (shortest form, no surrogates, at most U+10FFFF), where ws.c checks byte
 * ranges as the bytes arrive. Two different ways to the same answer: when
 * they disagree, one of them is wrong. */
#ifndef REFERENCE_UTF8_H
#define REFERENCE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static bool reference_utf8_is_valid(const uint8_t *bytes, size_t length)
{
    size_t i = 0;
    while (i < length) {
        uint8_t first = bytes[i];
        size_t size = first < 0x80           ? 1
                      : (first >> 5) == 0x06 ? 2
                      : (first >> 4) == 0x0E ? 3
                      : (first >> 3) == 0x1E ? 4
                                             : 0;
        if (size == 0 || i + size > length)
            return false;
        uint32_t code_point = size == 1 ? first : first & (0x7F >> size);
        for (size_t k = 1; k < size; k++) {
            if ((bytes[i + k] & 0xC0) != 0x80)
                return false;
            code_point = code_point << 6 | (bytes[i + k] & 0x3F);
        }
        static const uint32_t smallest[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (code_point < smallest[size] || code_point > 0x10FFFF ||
            (code_point >= 0xD800 && code_point <= 0xDFFF))
            return false;
        i += size;
    }
    return true;
}

#endif
