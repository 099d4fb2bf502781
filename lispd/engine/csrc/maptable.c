/* One copy of the map-cache forwarding table, shared by every engine (see maptable.h).
 *
 * Design
 * ------
 * Region.  The main process's engine (the only writer) makes a memfd (memfd_create), sizes it
 * to a large sparse reservation (64 GiB by default, MAP_NORESERVE: only pages touched are
 * resident), seals it against shrinking and growing (F_SEAL_SHRINK | F_SEAL_GROW |
 * F_SEAL_SEAL) and maps it MAP_SHARED read-write.  Workers receive the descriptor and map it
 * PROT_READ: the seal guarantees a reader's mapping never loses its pages (no SIGBUS), so
 * it is never remapped, and a reader cannot write.  Page 0 is the header (magic, layout
 * sizes, the sequence, the published table); allocations follow.
 *
 * Offsets, not pointers.  The writer runs the ordinary lpm.c table whose arrays (slots,
 * buckets, scopes) the allocator below places in the region; each slot's value is the offset
 * of a record in the region.  At the end of every change the writer publishes the arrays'
 * offsets and sizes in the header.  A reader never follows a pointer: every offset it reads
 * (an array from the header, a record from a slot) is checked against the mapping through a
 * cursor (cursor.h, the one bounded reader of the engine) together with the length it is
 * about to read, and for alignment (the cursor spans the region only up to the allocator's
 * published end, so that no stray offset touches, and thereby allocates, an unused page of the
 * memfd); each field that decides an index or a loop bound is read
 * once (volatile) into a local before it is checked, so a value changing under the reader
 * cannot pass the check and then be used differently.  Loops are bounded by what was
 * checked: probe chains by the array's capacity, the binary search by the scope count, the
 * bucket's length bits by their 192 bits, the lengths of a scope by 129.  Whatever torn or
 * stale bytes a reader sees, it stays inside the mapping and finishes.
 *
 * Seqlock.  The header's sequence is odd while the writer changes anything a reader might
 * read.  The writer makes it odd (relaxed store, then a release fence) just before the first
 * visible change of an operation (lpm_mem.begin: lpm.c calls it lazily, so work done on new
 * arrays before they are switched in -- growth -- happens outside the write section), and even
 * again (release store) after publishing.  A reader loads the sequence (acquire), retries if
 * it is odd, looks up and copies the record into its own buffer, then issues an acquire fence
 * and loads the sequence again: the copy is used only when both loads agree.  After
 * MAP_READ_TRIES failed attempts the lookup reports busy: the engine punts the packet to
 * Python (counted as fastpath "punted-table-busy"), never waits longer.
 *
 * Growth and reuse.  lpm.c builds a grown array completely from the old one (which stays
 * untouched and consistent), then switches inside the write section and frees the old one.
 * Freed arrays and records go to per-size-class free lists (power-of-two classes, the link in
 * the block's first 8 bytes) and are reused by later allocations, whose writes may land
 * under a reader still walking the old contents: such a reader sees garbage, but only inside
 * the mapping (every offset checked), and its sequence check fails so it retries.  A freed
 * block of 1 MiB or more has its pages after the first punched out of the memfd
 * (FALLOC_FL_PUNCH_HOLE), so that a table that shrank gives its memory back; map_clear
 * punches the whole allocation area and starts the allocator again.  A stale reader touching
 * a punched page gets a zero page, still inside the mapping.
 *
 * Fallback.  When the region cannot be made (no memfd_create, a refused mapping: an old
 * kernel or a tight address-space limit) the table stays private (malloc'd records, a copy
 * per engine) and the workers are loaded with every record as before.
 */
#define _GNU_SOURCE
#include "maptable.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cursor.h"

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#endif

#define MAP_MAGIC 0x3142544450534c4cULL /* "LLSPDTB1" */
#define MAP_VERSION 1
#define MAP_HEADER 4096            /* page 0: the header only (never punched) */
#define MAP_PAGE 4096
#define MAP_MIN_CLASS 5            /* 32-byte blocks at least */
#define MAP_PUNCH_CLASS 20         /* freed blocks of 1 MiB and more give their pages back */
#define MAP_READ_TRIES 256           /* attempts of one reader lookup before it reports busy */
#define MAP_MAX_SCOPES (1u << 20)  /* more (iid, family) scopes than this: a torn header */

typedef struct {
    uint64_t magic;
    uint32_t version, header_size;
    uint64_t size;
    uint32_t slot_size, bucket_size, scope_size, rloc_size; /* the layout, checked by readers */
    _Atomic uint64_t seq;
    _Atomic uint64_t slots, mask;     /* offset of the slot array, capacity - 1 (0: none) */
    _Atomic uint64_t buckets, bmask;  /* the same for the buckets */
    _Atomic uint64_t scopes, nscopes; /* the scope array, and how many are used */
    _Atomic uint64_t records;
    _Atomic uint64_t top; /* the end of what the allocator handed out */
} map_header;

_Static_assert(sizeof(map_header) <= MAP_HEADER, "the header fits its page");
_Static_assert(_Alignof(lpm_slot) <= 8 && _Alignof(lpm_bucket) <= 8 && _Alignof(fp_record) <= 8,
               "every array and record is 8-aligned in the region");

static inline map_header *header(const fp_map *m) { return (map_header *)(void *)m->base; }

/* --- the writer's allocator -------------------------------------------------------------------- */

static int size_class(size_t size)
{
    int c = MAP_MIN_CLASS;
    while (c < 63 && ((size_t)1 << c) < size)
        c++;
    return c;
}

static void punch(fp_map *m, uint64_t off, uint64_t len)
{
    if (len && m->fd >= 0) /* after fp_map_close_fd the pages stay (the engine is closing) */
        (void)fallocate(m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
}

static void *region_zalloc(void *ctx, size_t size)
{
    fp_map *m = ctx;
    if (!size || size > m->size)
        return NULL;
    int c = size_class(size);
    uint64_t block = (uint64_t)1 << c;
    uint64_t off = m->head[c];
    if (off) { /* reused: this block is referenced by nothing a current reader sees */
        uint64_t next;
        memcpy(&next, m->base + off, sizeof next);
        m->head[c] = next;
        m->free_bytes -= block;
        /* a punched block is zero after its first page */
        memset(m->base + off, 0, c >= MAP_PUNCH_CLASS && size > MAP_PAGE ? MAP_PAGE : size);
        return m->base + off;
    }
    uint64_t align = block < 64 ? block : block < MAP_PAGE ? 64 : MAP_PAGE; /* packed records */
    uint64_t at = (m->top + align - 1) & ~(align - 1);
    if (at > m->size || block > m->size - at) {
        errno = ENOMEM;
        return NULL;
    }
    m->top = at + block;
    return m->base + at; /* never handed out since the region (or the last clear) began: zero */
}

static void region_release(void *ctx, void *p, size_t size)
{
    fp_map *m = ctx;
    if (!p)
        return;
    int c = size_class(size ? size : 1);
    uint64_t off = (uint64_t)((uint8_t *)p - m->base);
    if (c >= MAP_PUNCH_CLASS)
        punch(m, off + MAP_PAGE, ((uint64_t)1 << c) - MAP_PAGE);
    memcpy(m->base + off, &m->head[c], sizeof m->head[c]);
    m->head[c] = off;
    m->free_bytes += (uint64_t)1 << c;
}

/* --- the writer's seqlock ---------------------------------------------------------------------- */

static void write_begin(void *ctx)
{
    fp_map *m = ctx;
    map_header *h = header(m);
    uint64_t s = atomic_load_explicit(&h->seq, memory_order_relaxed);
    atomic_store_explicit(&h->seq, s | 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release); /* odd before any change is seen */
}

static inline uint64_t offset_of(const fp_map *m, const void *p)
{
    return p ? (uint64_t)((const uint8_t *)p - m->base) : 0;
}

/* End of a change: publish the table and make the sequence even again (a no-op when the
 * operation changed nothing visible). */
static void write_end(fp_map *m)
{
    if (m->mode != FP_MAP_WRITER || !m->lpm.writing)
        return;
    map_header *h = header(m);
    const lpm_table *t = &m->lpm;
    atomic_store_explicit(&h->slots, offset_of(m, t->slots), memory_order_relaxed);
    atomic_store_explicit(&h->mask, t->mask, memory_order_relaxed);
    atomic_store_explicit(&h->buckets, offset_of(m, t->buckets), memory_order_relaxed);
    atomic_store_explicit(&h->bmask, t->bmask, memory_order_relaxed);
    atomic_store_explicit(&h->scopes, offset_of(m, t->scopes), memory_order_relaxed);
    atomic_store_explicit(&h->nscopes, t->nscopes, memory_order_relaxed);
    atomic_store_explicit(&h->records, m->records, memory_order_relaxed);
    atomic_store_explicit(&h->top, m->top, memory_order_relaxed);
    uint64_t s = atomic_load_explicit(&h->seq, memory_order_relaxed);
    atomic_store_explicit(&h->seq, (s | 1) + 1, memory_order_release);
    m->lpm.writing = 0;
}

/* --- life cycle -------------------------------------------------------------------------------- */

void fp_map_init(fp_map *m)
{
    memset(m, 0, sizeof *m);
    m->fd = -1;
}

int fp_map_share(fp_map *m, size_t size)
{
    if (m->mode != FP_MAP_PRIVATE || m->records || m->lpm.mask || m->lpm.nscopes) {
        errno = EBUSY;
        return -1;
    }
    if (!size)
        size = FP_TABLE_RESERVE;
    if (size < 2 * MAP_HEADER) {
        errno = EINVAL;
        return -1;
    }
    int fd = memfd_create("lispd-forwarding-table", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    uint8_t *base = MAP_FAILED;
    if (ftruncate(fd, (off_t)size) == 0 &&
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
        base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (base == MAP_FAILED) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    map_header *h = (map_header *)(void *)base;
    h->magic = MAP_MAGIC;
    h->version = MAP_VERSION;
    h->header_size = MAP_HEADER;
    h->size = size;
    h->slot_size = sizeof(lpm_slot);
    h->bucket_size = sizeof(lpm_bucket);
    h->scope_size = sizeof(lpm_scope);
    h->rloc_size = sizeof(fp_rloc);
    atomic_store_explicit(&h->top, MAP_HEADER, memory_order_relaxed);
    atomic_store_explicit(&h->seq, 0, memory_order_release);
    m->mode = FP_MAP_WRITER;
    m->base = base;
    m->size = size;
    m->fd = fd;
    m->top = MAP_HEADER;
    m->mem = (lpm_mem){region_zalloc, region_release, write_begin, m};
    m->lpm.mem = &m->mem;
    return 0;
}

int fp_map_attach(fp_map *m, int fd)
{
    if (m->mode != FP_MAP_PRIVATE || m->records || m->lpm.mask || m->lpm.nscopes) {
        errno = EBUSY;
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -1;
    int seals = fcntl(fd, F_GET_SEALS);
    if (!S_ISREG(st.st_mode) || st.st_size < 2 * MAP_HEADER || seals < 0 ||
        !(seals & F_SEAL_SHRINK)) {
        errno = EINVAL; /* a region that could shrink under us could fault a reader */
        return -1;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *base = mmap(NULL, size, PROT_READ, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (base == MAP_FAILED)
        return -1;
    const map_header *h = (const map_header *)(const void *)base;
    if (h->magic != MAP_MAGIC || h->version != MAP_VERSION || h->header_size != MAP_HEADER ||
        h->size != size || h->slot_size != sizeof(lpm_slot) ||
        h->bucket_size != sizeof(lpm_bucket) || h->scope_size != sizeof(lpm_scope) ||
        h->rloc_size != sizeof(fp_rloc)) {
        munmap(base, size);
        errno = EINVAL;
        return -1;
    }
    m->mode = FP_MAP_READER;
    m->base = base;
    m->size = size;
    m->fd = -1;
    return 0;
}

void fp_map_close_fd(fp_map *m)
{
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
}

static void release_private(void *value) { free(value); }

void fp_map_free(fp_map *m)
{
    if (m->mode == FP_MAP_PRIVATE)
        lpm_clear(&m->lpm, release_private);
    if (m->base)
        munmap(m->base, m->size);
    if (m->fd >= 0)
        close(m->fd);
    fp_map_init(m);
}

/* --- changes ----------------------------------------------------------------------------------- */

static inline size_t record_size(int n) { return sizeof(fp_record) + (size_t)n * sizeof(fp_rloc); }

static const fp_record *stored(const fp_map *m, const void *value)
{
    if (!value)
        return NULL;
    return m->mode == FP_MAP_WRITER ? (const fp_record *)(m->base + (uintptr_t)value) : value;
}

static void drop_record(fp_map *m, void *value)
{
    const fp_record *r = stored(m, value);
    if (!r)
        return;
    size_t size = record_size(r->n);
    m->records--;
    m->record_bytes -= size;
    if (m->mode == FP_MAP_WRITER)
        region_release(m, (void *)r, size);
    else
        free(value);
}

int fp_map_set(fp_map *m, uint32_t iid, int family, const uint8_t *prefix, int plen,
               const fp_record *r)
{
    if (m->mode == FP_MAP_READER) {
        errno = EPERM;
        return -1;
    }
    if (r->n > FP_RLOCS_MAX) {
        errno = EINVAL;
        return -1;
    }
    size_t size = record_size(r->n);
    void *copy = m->mode == FP_MAP_WRITER ? region_zalloc(m, size) : malloc(size);
    if (!copy) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(copy, r, size); /* a block no reader can reach yet: outside the write section */
    void *value = m->mode == FP_MAP_WRITER ? (void *)(uintptr_t)offset_of(m, copy) : copy;
    void *old;
    if (lpm_insert(&m->lpm, iid, family, prefix, plen, value, &old) < 0) {
        int saved = errno;
        if (m->mode == FP_MAP_WRITER)
            region_release(m, copy, size);
        else
            free(copy);
        write_end(m);
        errno = saved;
        return -1;
    }
    drop_record(m, old);
    m->records++;
    m->record_bytes += size;
    write_end(m);
    return 0;
}

int fp_map_remove(fp_map *m, uint32_t iid, int family, const uint8_t *prefix, int plen)
{
    if (m->mode == FP_MAP_READER) {
        errno = EPERM;
        return -1;
    }
    void *old = lpm_remove(&m->lpm, iid, family, prefix, plen);
    drop_record(m, old);
    write_end(m);
    return old != NULL;
}

int fp_map_clear(fp_map *m)
{
    if (m->mode == FP_MAP_READER) {
        errno = EPERM;
        return -1;
    }
    if (m->mode == FP_MAP_PRIVATE) {
        lpm_clear(&m->lpm, release_private);
    } else {
        write_begin(m);
        m->lpm.writing = 1;
        /* every array and record at once: the allocator starts again on zero pages */
        punch(m, MAP_HEADER, m->top - MAP_HEADER);
        m->top = MAP_HEADER;
        m->free_bytes = 0;
        memset(m->head, 0, sizeof m->head);
        memset(&m->lpm, 0, sizeof m->lpm);
        m->lpm.mem = &m->mem;
        m->lpm.writing = 1;
    }
    m->records = m->record_bytes = 0;
    write_end(m);
    return 0;
}

/* --- lookups ----------------------------------------------------------------------------------- */

/* Reads a reader makes of the region: each once (volatile), so that a value checked is the
 * value used. */
static inline uint8_t rd8(const void *p) { return *(const volatile uint8_t *)p; }
static inline uint16_t rd16(const void *p) { return *(const volatile uint16_t *)p; }
static inline uint32_t rd32(const void *p) { return *(const volatile uint32_t *)p; }
static inline uint64_t rd64(const void *p) { return *(const volatile uint64_t *)p; }

/* A reader's snapshot of the published table, every array checked inside the mapping. */
typedef struct {
    cursor region;
    const lpm_slot *slots;
    uint64_t mask;
    const lpm_bucket *buckets;
    uint64_t bmask;
    const lpm_scope *scopes;
    uint64_t nscopes;
} map_view;

/* The array of count elements of size at off, or NULL when it is not inside the region
 * (or not aligned). */
static const void *region_array(cursor region, uint64_t off, uint64_t count, size_t size)
{
    if (!off || (off & 7) || !count || count > region.len / size)
        return NULL;
    return cur_peek(region, (size_t)off, (size_t)count * size);
}

static int load_view(const fp_map *m, map_view *v)
{
    const map_header *h = header(m);
    /* Only what was handed out: an offset past it (stale or torn) is refused without
     * touching the page, which in a memfd hole would be allocated by the read. */
    uint64_t top = atomic_load_explicit(&h->top, memory_order_relaxed);
    v->region = cur_make(m->base, top < m->size ? (size_t)top : m->size);
    uint64_t slots = atomic_load_explicit(&h->slots, memory_order_relaxed);
    v->mask = atomic_load_explicit(&h->mask, memory_order_relaxed);
    uint64_t buckets = atomic_load_explicit(&h->buckets, memory_order_relaxed);
    v->bmask = atomic_load_explicit(&h->bmask, memory_order_relaxed);
    uint64_t scopes = atomic_load_explicit(&h->scopes, memory_order_relaxed);
    v->nscopes = atomic_load_explicit(&h->nscopes, memory_order_relaxed);
    if (!v->nscopes || v->nscopes > MAP_MAX_SCOPES || (v->mask & (v->mask + 1)) ||
        (v->bmask & (v->bmask + 1)))
        return -1;
    v->scopes = region_array(v->region, scopes, v->nscopes, sizeof(lpm_scope));
    v->slots = region_array(v->region, slots, v->mask + 1, sizeof(lpm_slot));
    v->buckets = buckets ? region_array(v->region, buckets, v->bmask + 1, sizeof(lpm_bucket))
                         : NULL;
    if (!v->scopes || !v->slots || (buckets && !v->buckets))
        return -1;
    return 0;
}

static const lpm_scope *view_scope(const map_view *v, uint32_t iid, int family)
{
    uint64_t lo = 0, hi = v->nscopes;
    while (lo < hi) { /* at most 21 steps: nscopes <= MAP_MAX_SCOPES */
        uint64_t mid = lo + (hi - lo) / 2;
        const lpm_scope *s = &v->scopes[mid];
        int f = rd8(&s->family);
        uint32_t i = rd32(&s->iid);
        if (f < family || (f == family && i < iid))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < v->nscopes && rd8(&v->scopes[lo].family) == family && rd32(&v->scopes[lo].iid) == iid)
        return &v->scopes[lo];
    return NULL;
}

static const lpm_bucket *view_bucket(const map_view *v, uint32_t iid, int family,
                                     const uint8_t *key)
{
    if (!v->buckets)
        return NULL;
    uint64_t i = lpm_hash(iid, family, 255, key) & v->bmask;
    for (uint64_t n = 0; n <= v->bmask; n++, i = (i + 1) & v->bmask) {
        const lpm_bucket *b = &v->buckets[i];
        int f = rd8(&b->family);
        if (!f)
            return NULL;
        if (f == family && rd32(&b->iid) == iid && memcmp(b->addr, key, 16) == 0)
            return b;
    }
    return NULL;
}

/* The value (a record's offset) of exactly (iid, family, plen, addr's first plen bits). */
static uint64_t view_probe(const map_view *v, uint32_t iid, int family, const uint8_t *addr,
                           int alen, int plen)
{
    uint8_t key[16];
    lpm_mask_into(key, addr, alen, plen);
    uint64_t i = lpm_hash(iid, family, plen, key) & v->mask;
    for (uint64_t n = 0; n <= v->mask; n++, i = (i + 1) & v->mask) {
        const lpm_slot *s = &v->slots[i];
        int f = rd8(&s->family);
        if (!f)
            return 0;
        if (f == family && rd8(&s->plen) == plen && rd32(&s->iid) == iid &&
            memcmp(s->addr, key, 16) == 0)
            return rd64(&s->value);
    }
    return 0;
}

static uint64_t view_lookup(const map_view *v, uint32_t iid, int family, const uint8_t *addr)
{
    const lpm_scope *scope = view_scope(v, iid, family);
    if (!scope)
        return 0;
    int alen = family == 4 ? 4 : 16;
    unsigned nlens = rd8(&scope->nlens), first_short = rd8(&scope->first_short);
    if (nlens > 129 || first_short > nlens)
        return 0;
    if (first_short) {
        uint8_t cut[16];
        lpm_mask_into(cut, addr, alen, lpm_bucket_len(family));
        const lpm_bucket *b = view_bucket(v, iid, family, cut);
        for (int w = 2; b && w >= 0; w--) {
            uint64_t bits = rd64(&b->bits[w]);
            while (bits) { /* at most 64 rounds: one bit cleared each */
                int plen = w * 64 + 63 - __builtin_clzll(bits);
                bits &= ~(1ULL << (plen & 63));
                if (!lpm_valid(family, plen))
                    continue;
                uint64_t value = view_probe(v, iid, family, addr, alen, plen);
                if (value)
                    return value;
            }
        }
    }
    for (unsigned k = first_short; k < nlens; k++) {
        int plen = rd8(&scope->lens[k]);
        if (!lpm_valid(family, plen))
            continue;
        uint64_t value = view_probe(v, iid, family, addr, alen, plen);
        if (value)
            return value;
    }
    return 0;
}

/* Copy the record at off into *copy: 1, or 0 when off or its RLOC count does not fit. */
static int copy_record(const map_view *v, uint64_t off, fp_record_copy *copy)
{
    if (off & 7)
        return 0;
    const uint8_t *head = cur_peek(v->region, (size_t)off, sizeof(fp_record));
    if (!head)
        return 0;
    unsigned n = rd16(head + offsetof(fp_record, n));
    if (n > FP_RLOCS_MAX)
        return 0;
    const uint8_t *all = cur_peek(v->region, (size_t)off, record_size((int)n));
    if (!all)
        return 0;
    memcpy(copy->bytes, all, record_size((int)n));
    ((fp_record *)(void *)copy->bytes)->n = (uint16_t)n; /* the count checked, whatever moved */
    return 1;
}

static const fp_record *reader_find(const fp_map *m, uint32_t iid, int family,
                                    const uint8_t *addr, fp_record_copy *copy, int *busy)
{
    const map_header *h = header(m);
    for (int attempt = 0; attempt < MAP_READ_TRIES; attempt++) {
        uint64_t s1 = atomic_load_explicit(&h->seq, memory_order_acquire);
        if (s1 & 1) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            continue;
        }
        map_view v;
        uint64_t off = 0;
        int found = 0;
        if (load_view(m, &v) == 0) {
            off = view_lookup(&v, iid, family, addr);
            found = off && copy_record(&v, off, copy);
        }
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&h->seq, memory_order_relaxed) != s1)
            continue; /* the writer changed something meanwhile: all of it may be wrong */
        if (off && !found)
            continue; /* a stable table never points outside itself: a torn header word */
        return found ? (const fp_record *)(const void *)copy->bytes : NULL;
    }
    *busy = 1;
    return NULL;
}

const fp_record *fp_map_find(const fp_map *m, uint32_t iid, int family, const uint8_t *addr,
                             fp_record_copy *copy, int *busy)
{
    *busy = 0;
    if (family != 4 && family != 6)
        return NULL;
    if (m->mode == FP_MAP_READER)
        return reader_find(m, iid, family, addr, copy, busy);
    return stored(m, lpm_lookup(&m->lpm, iid, family, addr));
}

size_t fp_map_count(const fp_map *m)
{
    if (m->mode == FP_MAP_READER) { /* the writer's word: no more than the region can hold */
        uint64_t n = atomic_load_explicit(&header(m)->records, memory_order_relaxed);
        uint64_t most = m->size / sizeof(fp_record);
        return (size_t)(n < most ? n : most);
    }
    return m->records;
}

size_t fp_map_memory(const fp_map *m)
{
    if (m->mode == FP_MAP_READER)
        return 0; /* it holds nothing of its own: the writer's region is counted there */
    return lpm_memory(&m->lpm) + m->record_bytes;
}

void fp_map_usage_of(const fp_map *m, fp_map_usage *u)
{
    memset(u, 0, sizeof *u);
    if (m->mode == FP_MAP_PRIVATE)
        return;
    u->reserved = m->size;
    u->sequence = atomic_load_explicit(&header(m)->seq, memory_order_relaxed);
    if (m->mode == FP_MAP_WRITER) {
        u->allocated = m->top - MAP_HEADER;
        u->free = m->free_bytes;
        struct stat st;
        if (fstat(m->fd, &st) == 0)
            u->resident = (size_t)st.st_blocks * 512;
    }
}
