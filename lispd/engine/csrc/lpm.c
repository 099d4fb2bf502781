/* See lpm.h. */
#include "lpm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define mask_into lpm_mask_into
#define hash_key lpm_hash
#define bucket_len lpm_bucket_len
#define valid lpm_valid

static void *zalloc(const lpm_table *t, size_t n, size_t size)
{
    if (t->mem)
        return t->mem->zalloc(t->mem->ctx, n * size);
    return calloc(n, size);
}

static void release(const lpm_table *t, void *p, size_t size)
{
    if (!p)
        return;
    if (t->mem)
        t->mem->release(t->mem->ctx, p, size);
    else
        free(p);
}

/* Before the first change a reader of the table could see. */
static inline void begin(lpm_table *t)
{
    if (t->mem && !t->writing) {
        if (t->mem->begin)
            t->mem->begin(t->mem->ctx);
        t->writing = 1;
    }
}

static inline size_t bucket_home(const lpm_table *t, uint32_t iid, int family, const uint8_t *key)
{
    return hash_key(iid, family, 255, key) & t->bmask;
}

static lpm_bucket *find_bucket(const lpm_table *t, uint32_t iid, int family, const uint8_t *key)
{
    if (!t->bmask)
        return NULL;
    for (size_t i = bucket_home(t, iid, family, key); t->buckets[i].family; i = (i + 1) & t->bmask) {
        const lpm_bucket *b = &t->buckets[i];
        if (b->family == family && b->iid == iid && memcmp(b->addr, key, 16) == 0)
            return &t->buckets[i];
    }
    return NULL;
}

static int grow_buckets(lpm_table *t)
{
    size_t cap = t->bmask ? (t->bmask + 1) * 2 : 64;
    lpm_bucket *buckets = zalloc(t, cap, sizeof *buckets);
    if (!buckets) {
        errno = ENOMEM;
        return -1;
    }
    size_t old = t->bmask ? t->bmask + 1 : 0;
    lpm_bucket *from = t->buckets;
    for (size_t i = 0; i < old; i++) { /* the old array stays as it is until the switch */
        if (!from[i].family)
            continue;
        size_t j = hash_key(from[i].iid, from[i].family, 255, from[i].addr) & (cap - 1);
        while (buckets[j].family)
            j = (j + 1) & (cap - 1);
        buckets[j] = from[i];
    }
    begin(t);
    t->buckets = buckets;
    t->bmask = cap - 1;
    release(t, from, old * sizeof *from);
    return 0;
}

static int bucket_add(lpm_table *t, uint32_t iid, int family, const uint8_t *key, int plen)
{
    uint8_t cut[16];
    mask_into(cut, key, 16, bucket_len(family));
    lpm_bucket *b = find_bucket(t, iid, family, cut);
    if (!b) {
        if ((t->bused + 1) * 5 > (t->bmask + 1) * 3 && grow_buckets(t) < 0)
            return -1;
        size_t i = bucket_home(t, iid, family, cut);
        while (t->buckets[i].family)
            i = (i + 1) & t->bmask;
        begin(t);
        b = &t->buckets[i];
        memset(b, 0, sizeof *b);
        b->iid = iid;
        b->family = (uint8_t)family;
        memcpy(b->addr, cut, 16);
        t->bused++;
    }
    begin(t);
    b->count++;
    b->bits[plen >> 6] |= 1ULL << (plen & 63);
    return 0;
}

static void bucket_remove(lpm_table *t, uint32_t iid, int family, const uint8_t *key)
{
    uint8_t cut[16];
    mask_into(cut, key, 16, bucket_len(family));
    lpm_bucket *b = find_bucket(t, iid, family, cut);
    if (!b)
        return;
    begin(t);
    if (--b->count)
        return;
    size_t i = (size_t)(b - t->buckets), j = i;
    for (;;) { /* backward-shift deletion, as for prefixes */
        j = (j + 1) & t->bmask;
        lpm_bucket *s = &t->buckets[j];
        if (!s->family)
            break;
        size_t home = bucket_home(t, s->iid, s->family, s->addr);
        int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        t->buckets[i] = *s;
        i = j;
    }
    memset(&t->buckets[i], 0, sizeof t->buckets[i]);
    t->bused--;
}

static inline int slot_is(const lpm_slot *s, uint32_t iid, int family, int plen,
                          const uint8_t *addr)
{
    return s->family == family && s->plen == plen && s->iid == iid &&
           memcmp(s->addr, addr, 16) == 0;
}

static lpm_scope *find_scope(const lpm_table *t, uint32_t iid, int family, size_t *where)
{
    size_t lo = 0, hi = t->nscopes;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const lpm_scope *s = &t->scopes[mid];
        if (s->family < family || (s->family == family && s->iid < iid))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (where)
        *where = lo;
    if (lo < t->nscopes && t->scopes[lo].family == family && t->scopes[lo].iid == iid)
        return &t->scopes[lo];
    return NULL;
}

static int grow(lpm_table *t)
{
    size_t cap = t->mask ? (t->mask + 1) * 2 : 64;
    lpm_slot *slots = zalloc(t, cap, sizeof *slots);
    if (!slots) {
        errno = ENOMEM;
        return -1;
    }
    for (size_t i = 0; t->mask && i <= t->mask; i++) {
        lpm_slot *s = &t->slots[i];
        if (!s->family)
            continue;
        size_t j = hash_key(s->iid, s->family, s->plen, s->addr) & (cap - 1);
        while (slots[j].family)
            j = (j + 1) & (cap - 1);
        slots[j] = *s;
    }
    lpm_slot *from = t->slots; /* untouched until the switch: readers of it stay right */
    size_t old = t->mask ? t->mask + 1 : 0;
    begin(t);
    t->slots = slots;
    t->mask = cap - 1;
    release(t, from, old * sizeof *from);
    return 0;
}

static void count_length(lpm_scope *s, int plen, int delta)
{
    s->count[plen] += (uint32_t)delta;
    int n = 0;
    s->first_short = 0;
    for (int len = 128; len >= 0; len--)
        if (s->count[len]) {
            if (len >= bucket_len(s->family))
                s->first_short = (uint8_t)(n + 1);
            s->lens[n++] = (uint8_t)len;
        }
    s->nlens = (uint8_t)n; /* up to 129 (IPv6 /0 to /128) */
}

int lpm_insert(lpm_table *t, uint32_t iid, int family, const uint8_t *prefix, int plen,
               void *value, void **old)
{
    *old = NULL;
    if (!valid(family, plen)) {
        errno = EINVAL;
        return -1;
    }
    uint8_t key[16];
    mask_into(key, prefix, family == 4 ? 4 : 16, plen);
    if (t->mask) {
        size_t i = hash_key(iid, family, plen, key) & t->mask;
        for (; t->slots[i].family; i = (i + 1) & t->mask)
            if (slot_is(&t->slots[i], iid, family, plen, key)) {
                begin(t);
                *old = t->slots[i].value;
                t->slots[i].value = value;
                return 0;
            }
    }
    if ((t->used + 1) * 5 > (t->mask + 1) * 3 && grow(t) < 0)
        return -1;
    /* Every array that may grow grows first, while readers still see the table unchanged. */
    if (plen >= bucket_len(family) && (t->bused + 1) * 5 > (t->bmask + 1) * 3 &&
        grow_buckets(t) < 0)
        return -1;
    size_t where;
    lpm_scope *scope = find_scope(t, iid, family, &where);
    if (!scope) {
        if (t->nscopes == t->scopes_cap) {
            size_t cap = t->scopes_cap ? t->scopes_cap * 2 : 8;
            lpm_scope *grown = zalloc(t, cap, sizeof *grown);
            if (!grown) {
                errno = ENOMEM;
                return -1;
            }
            if (t->nscopes)
                memcpy(grown, t->scopes, t->nscopes * sizeof *grown);
            lpm_scope *from = t->scopes;
            size_t oldcap = t->scopes_cap;
            begin(t);
            t->scopes = grown;
            t->scopes_cap = cap;
            release(t, from, oldcap * sizeof *from);
        }
        begin(t);
        memmove(&t->scopes[where + 1], &t->scopes[where],
                (t->nscopes - where) * sizeof *t->scopes);
        scope = &t->scopes[where];
        memset(scope, 0, sizeof *scope);
        scope->iid = iid;
        scope->family = (uint8_t)family;
        t->nscopes++;
    }
    size_t i = hash_key(iid, family, plen, key) & t->mask;
    while (t->slots[i].family)
        i = (i + 1) & t->mask;
    begin(t);
    lpm_slot *s = &t->slots[i];
    s->iid = iid;
    s->family = (uint8_t)family;
    s->plen = (uint8_t)plen;
    memcpy(s->addr, key, 16);
    s->value = value;
    t->used++;
    count_length(scope, plen, 1);
    if (plen >= bucket_len(family) && bucket_add(t, iid, family, key, plen) < 0) {
        lpm_remove(t, iid, family, key, plen);
        return -1;
    }
    return 0;
}

void *lpm_remove(lpm_table *t, uint32_t iid, int family, const uint8_t *prefix, int plen)
{
    if (!t->mask || !valid(family, plen))
        return NULL;
    uint8_t key[16];
    mask_into(key, prefix, family == 4 ? 4 : 16, plen);
    size_t i = hash_key(iid, family, plen, key) & t->mask;
    for (; t->slots[i].family; i = (i + 1) & t->mask)
        if (slot_is(&t->slots[i], iid, family, plen, key))
            break;
    if (!t->slots[i].family)
        return NULL;
    begin(t);
    void *value = t->slots[i].value;
    /* Backward-shift deletion: no tombstones, probe chains stay short. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        lpm_slot *s = &t->slots[j];
        if (!s->family)
            break;
        size_t home = hash_key(s->iid, s->family, s->plen, s->addr) & t->mask;
        int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        t->slots[i] = *s;
        i = j;
    }
    memset(&t->slots[i], 0, sizeof t->slots[i]);
    t->used--;
    if (plen >= bucket_len(family))
        bucket_remove(t, iid, family, key);
    size_t where;
    lpm_scope *scope = find_scope(t, iid, family, &where);
    if (scope) {
        count_length(scope, plen, -1);
        if (!scope->nlens) {
            memmove(&t->scopes[where], &t->scopes[where + 1],
                    (t->nscopes - where - 1) * sizeof *t->scopes);
            t->nscopes--;
        }
    }
    return value;
}

static inline void *probe(const lpm_table *t, uint32_t iid, int family, const uint8_t *addr,
                          int alen, int plen)
{
    uint8_t key[16];
    mask_into(key, addr, alen, plen);
    size_t i = hash_key(iid, family, plen, key) & t->mask;
    for (; t->slots[i].family; i = (i + 1) & t->mask)
        if (slot_is(&t->slots[i], iid, family, plen, key))
            return t->slots[i].value;
    return NULL;
}

void *lpm_lookup(const lpm_table *t, uint32_t iid, int family, const uint8_t *addr)
{
    if (!t->nscopes || (family != 4 && family != 6))
        return NULL;
    const lpm_scope *scope = find_scope(t, iid, family, NULL);
    if (!scope)
        return NULL;
    int alen = family == 4 ? 4 : 16;
    if (scope->first_short) {
        uint8_t cut[16];
        mask_into(cut, addr, alen, bucket_len(family));
        const lpm_bucket *b = find_bucket(t, iid, family, cut);
        for (int w = 2; b && w >= 0; w--) {
            uint64_t bits = b->bits[w];
            while (bits) {
                int plen = w * 64 + 63 - __builtin_clzll(bits);
                bits &= ~(1ULL << (plen & 63));
                void *value = probe(t, iid, family, addr, alen, plen);
                if (value)
                    return value;
            }
        }
    }
    for (int k = scope->first_short; k < scope->nlens; k++) {
        void *value = probe(t, iid, family, addr, alen, scope->lens[k]);
        if (value)
            return value;
    }
    return NULL;
}

void lpm_clear(lpm_table *t, void (*release_value)(void *))
{
    begin(t);
    for (size_t i = 0; t->mask && i <= t->mask; i++)
        if (t->slots[i].family && release_value)
            release_value(t->slots[i].value);
    release(t, t->slots, t->mask ? (t->mask + 1) * sizeof *t->slots : 0);
    release(t, t->buckets, t->bmask ? (t->bmask + 1) * sizeof *t->buckets : 0);
    release(t, t->scopes, t->scopes_cap * sizeof *t->scopes);
    const lpm_mem *mem = t->mem;
    int writing = t->writing;
    memset(t, 0, sizeof *t);
    t->mem = mem;
    t->writing = writing;
}

size_t lpm_memory(const lpm_table *t)
{
    return (t->mask ? (t->mask + 1) * sizeof(lpm_slot) : 0) +
           (t->bmask ? (t->bmask + 1) * sizeof(lpm_bucket) : 0) + t->scopes_cap * sizeof(lpm_scope);
}
