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
} lpm_table;

/* Insert or replace; *old receives the replaced value (NULL when new).  -1: out of memory
 * (ENOMEM), or a family other than 4 and 6 or a length past its width (EINVAL). */
int lpm_insert(lpm_table *t, uint32_t iid, int family, const uint8_t *prefix, int plen,
               void *value, void **old);
/* Remove exactly that prefix; returns its value, or NULL when absent (or not a valid one). */
void *lpm_remove(lpm_table *t, uint32_t iid, int family, const uint8_t *prefix, int plen);
/* The value of the longest prefix of (iid, family) holding addr, or NULL. */
void *lpm_lookup(const lpm_table *t, uint32_t iid, int family, const uint8_t *addr);
/* Remove everything, calling release(value) for each stored value (release may be NULL). */
void lpm_clear(lpm_table *t, void (*release)(void *));
/* Bytes of memory held by the table itself (not the values). */
size_t lpm_memory(const lpm_table *t);
/* The scopes in (family, iid) order: lets callers walk instance-IDs lowest first. */
static inline const lpm_scope *lpm_scopes(const lpm_table *t, size_t *n)
{
    *n = t->nscopes;
    return t->scopes;
}

#endif
