/* The one bounded reader every parser of the engine reads untrusted bytes through.
 *
 * A cursor is a span (pointer, length) of the bytes actually received.  Reads name an offset
 * into the span and succeed only when the bytes are there; nothing reads past len, whatever
 * a length field in the packet claims.  Two idioms, both checked:
 *
 *   - a fixed-size header is peeked as one span (cur_peek(c, off, 20) returns NULL when
 *     fewer bytes are left) and read at constant offsets inside that span only;
 *   - every variable offset (an IHL, a TCP data offset, a segment boundary) goes through
 *     the cursor again: peek_u8/u16/u32, cur_peek, cur_sub, cur_take.
 *
 * A wcursor is the same over bytes the engine may rewrite in place (TTL, ECN, checksums,
 * segment headers); poke_u8/u16/u32 and wcur_peek are checked the same way.
 *
 * Everything here is static inline: a check is one compare, and the compiler merges checks it
 * can prove redundant.  Multi-byte values are big-endian (network order) unless named _ne.
 */
#ifndef LISPD_CURSOR_H
#define LISPD_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t len;
} cursor;

typedef struct {
    uint8_t *p;
    size_t len;
} wcursor;

static inline cursor cur_make(const uint8_t *p, size_t len) { return (cursor){p, len}; }
static inline wcursor wcur_make(uint8_t *p, size_t len) { return (wcursor){p, len}; }
static inline cursor cur_of(wcursor w) { return (cursor){w.p, w.len}; }

/* n bytes at off are inside the span (no overflow: off is compared before the subtraction) */
static inline bool cur_has(cursor c, size_t off, size_t n) { return off <= c.len && n <= c.len - off; }
static inline bool wcur_has(wcursor w, size_t off, size_t n) { return off <= w.len && n <= w.len - off; }

/* The n bytes at off, or NULL when the span is shorter. */
static inline const uint8_t *cur_peek(cursor c, size_t off, size_t n)
{
    return cur_has(c, off, n) ? c.p + off : NULL;
}
static inline uint8_t *wcur_peek(wcursor w, size_t off, size_t n)
{
    return wcur_has(w, off, n) ? w.p + off : NULL;
}

/* The sub-span of n bytes at off; false (and *out untouched) when it does not fit. */
static inline bool cur_sub(cursor c, size_t off, size_t n, cursor *out)
{
    if (!cur_has(c, off, n))
        return false;
    *out = cur_make(c.p + off, n);
    return true;
}
static inline bool wcur_sub(wcursor w, size_t off, size_t n, wcursor *out)
{
    if (!wcur_has(w, off, n))
        return false;
    *out = wcur_make(w.p + off, n);
    return true;
}

/* Everything from off on (empty when off is at the end); false when off is past it. */
static inline bool cur_rest(cursor c, size_t off, cursor *out)
{
    return off <= c.len && cur_sub(c, off, c.len - off, out);
}
static inline bool wcur_rest(wcursor w, size_t off, wcursor *out)
{
    return off <= w.len && wcur_sub(w, off, w.len - off, out);
}

/* Consume n bytes from the front: *out (when not NULL) points at them. */
static inline bool cur_take(cursor *c, size_t n, const uint8_t **out)
{
    if (n > c->len)
        return false;
    if (out)
        *out = c->p;
    c->p += n;
    c->len -= n;
    return true;
}

static inline bool peek_u8(cursor c, size_t off, unsigned *v)
{
    const uint8_t *b = cur_peek(c, off, 1);
    if (!b)
        return false;
    *v = b[0];
    return true;
}

static inline bool peek_u16(cursor c, size_t off, unsigned *v)
{
    const uint8_t *b = cur_peek(c, off, 2);
    if (!b)
        return false;
    *v = (unsigned)b[0] << 8 | b[1];
    return true;
}

static inline bool peek_u32(cursor c, size_t off, uint32_t *v)
{
    const uint8_t *b = cur_peek(c, off, 4);
    if (!b)
        return false;
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return true;
}

/* A host-order (native-endian) 16-bit field: the virtio-net header's. */
static inline bool peek_u16_ne(cursor c, size_t off, uint16_t *v)
{
    const uint8_t *b = cur_peek(c, off, 2);
    if (!b)
        return false;
    memcpy(v, b, 2);
    return true;
}

static inline bool poke_u8(wcursor w, size_t off, unsigned v)
{
    uint8_t *b = wcur_peek(w, off, 1);
    if (!b)
        return false;
    b[0] = (uint8_t)v;
    return true;
}

static inline bool poke_u16(wcursor w, size_t off, unsigned v)
{
    uint8_t *b = wcur_peek(w, off, 2);
    if (!b)
        return false;
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
    return true;
}

static inline bool poke_u32(wcursor w, size_t off, uint32_t v)
{
    uint8_t *b = wcur_peek(w, off, 4);
    if (!b)
        return false;
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
    return true;
}

/* Fixed-span readers: b points at a span a cur_peek of at least off + 2 (or 4) bytes gave. */
static inline unsigned span_u16(const uint8_t *b, size_t off) { return (unsigned)b[off] << 8 | b[off + 1]; }
static inline uint32_t span_u32(const uint8_t *b, size_t off)
{
    return (uint32_t)b[off] << 24 | (uint32_t)b[off + 1] << 16 | (uint32_t)b[off + 2] << 8 | b[off + 3];
}

#endif
