/* Longest-prefix match over (instance-ID, address family) scopes.
 *
 * One open-addressing hash table holds every prefix keyed by (iid, family, length, masked
 * address); each scope remembers which prefix lengths it holds, longest first.  A lookup
 * probes those lengths in order: a handful of hash probes, no pointer chasing through a trie,
 * and memory linear in the number of prefixes (one 40-byte slot each at <= 60% load).
 */
#ifndef LISPD_LPM_H
#define LISPD_LPM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint32_t iid;
    uint8_t family; /* 0: empty slot; 4 or 6 */
    uint8_t plen;
    uint8_t addr[16]; /* the prefix, host bits zero; bytes past the family's length zero */
    void *value;
} lpm_slot;

typedef struct {
    uint32_t iid;
    uint8_t family; /* 0: empty slot */
    uint32_t count; /* prefixes in the bucket */
    uint8_t addr[16];
    uint64_t bits[3]; /* prefix lengths present (bit L of the 192) */
} lpm_bucket;

typedef struct {
    uint32_t iid;
    uint8_t family;
    uint8_t nlens; /* up to 129 */
    uint8_t first_short; /* index in lens of the first length shorter than the bucket's */
    uint8_t lens[129]; /* lengths present, longest first */
    uint32_t count[129];
} lpm_scope;

/* Where a table's arrays come from, and who is told before a change readers could see.
 * NULL (the default): calloc/free, nobody told.  The shared forwarding table (maptable.c)
 * allocates in its region and opens a write section (seqlock) at begin: arrays are built
 * before begin where the old ones stay untouched (growth), so readers in other processes
 * wait only for the short part that changes what they read. */
typedef struct {
    void *(*zalloc)(void *ctx, size_t size); /* zeroed bytes, or NULL */
    void (*release)(void *ctx, void *p, size_t size);
    void (*begin)(void *ctx); /* called once before the first visible change of an operation */
    void *ctx;
} lpm_mem;

typedef struct {
    lpm_slot *slots;
    size_t mask; /* capacity - 1 (a power of two), or 0 before the first insert */
    size_t used;
    lpm_bucket *buckets;
    size_t bmask;
    size_t bused;
    lpm_scope *scopes; /* sorted by (family, iid) */
    size_t nscopes;
    size_t scopes_cap;
    const lpm_mem *mem; /* NULL: the C heap */
    int writing;        /* mem->begin was called in this operation (the caller resets it) */
} lpm_table;

/* Insert or replace; *old receives the replaced value (NULL when new).  -1: out of memory
 * (ENOMEM), or a family other than 4 and 6 or a length past its width (EINVAL). */
int lpm_insert(lpm_table *t, uint32_t iid, int family, const uint8_t *prefix, int plen,
               void *value, void **old);
/* Remove exactly that prefix; returns its value, or NULL when absent (or not a valid one). */
void *lpm_remove(lpm_table *t, uint32_t iid, int family, const uint8_t *prefix, int plen);
/* The value of the longest prefix of (iid, family) holding addr, or NULL. */
void *lpm_lookup(const lpm_table *t, uint32_t iid, int family, const uint8_t *addr);
/* Remove everything, calling release(value) for each stored value (release may be NULL);
 * the table keeps its mem. */
void lpm_clear(lpm_table *t, void (*release)(void *));
/* Bytes of memory held by the table itself (not the values). */
size_t lpm_memory(const lpm_table *t);
/* The scopes in (family, iid) order: lets callers walk instance-IDs lowest first. */
static inline const lpm_scope *lpm_scopes(const lpm_table *t, size_t *n)
{
    *n = t->nscopes;
    return t->scopes;
}

/* --- the key arithmetic, shared by the table and its bounded readers (maptable.c) --- */

/* The first bits bits of a 64-bit big-endian word, in memory order: masks are computed, not
 * looked up, so the table code has no file-level state at all. */
static inline uint64_t lpm_word_mask(int bits)
{
    uint64_t m = bits <= 0 ? 0 : bits >= 64 ? ~0ULL : ~0ULL << (64 - bits);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    m = __builtin_bswap64(m);
#endif
    return m;
}

/* The 16-byte key of addr (alen bytes) cut to plen bits. */
static inline void lpm_mask_into(uint8_t *out, const uint8_t *addr, int alen, int plen)
{
    uint64_t a[2] = {0, 0};
    memcpy(a, addr, (size_t)alen);
    a[0] &= lpm_word_mask(plen);
    a[1] &= lpm_word_mask(plen - 64);
    memcpy(out, a, 16);
}

/* A family lpm knows and a prefix length that fits it. */
static inline int lpm_valid(int family, int plen)
{
    return (family == 4 && plen >= 0 && plen <= 32) || (family == 6 && plen >= 0 && plen <= 128);
}

static inline uint64_t lpm_hash(uint32_t iid, int family, int plen, const uint8_t *addr)
{
    uint64_t a, b;
    memcpy(&a, addr, 8);
    memcpy(&b, addr + 8, 8);
    uint64_t h = ((uint64_t)iid << 16 | (uint64_t)family << 8 | (uint64_t)plen) *
                 0x9E3779B97F4A7C15ULL;
    h ^= a * 0xC2B2AE3D27D4EB4FULL;
    h = (h << 31 | h >> 33) ^ b * 0x165667B19E3779F9ULL;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    return h ^ (h >> 32);
}

static inline int lpm_bucket_len(int family) { return family == 4 ? 16 : 48; }

#endif
