/* The map-cache forwarding table of an engine: private, or one copy in shared memory that the
 * main process writes and worker processes read (see the comment at the top of maptable.c).
 *
 *   private  an lpm_table of malloc'd records, as every engine had before (the fallback when
 *            the shared region cannot be made, and what Engine() without shared=True gets);
 *   writer   the same lpm_table and records, but every array and record lives in a sealed
 *            memfd region mapped MAP_SHARED; each change is published under a seqlock;
 *   reader   that region mapped PROT_READ by another process: no lpm_table of its own, lookups
 *            walk the region through bounds-checked offsets and copy the record out.
 */
#ifndef LISPD_MAPTABLE_H
#define LISPD_MAPTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "lpm.h"

typedef struct {
    uint8_t addr[16];
    uint16_t port;
    uint8_t family;
    uint8_t via_data; /* send from the 4341 socket (a NAT-translated destination) */
    uint32_t weight;
} fp_rloc;

typedef struct {
    uint32_t total_weight;
    uint16_t n;       /* 0: punt every packet matching this prefix to Python */
    uint8_t all_down; /* every RLOC of the mapping is down: these are the best anyway */
    fp_rloc rloc[];
} fp_record;

#define FP_RLOCS_MAX 255
#define FP_RECORD_MAX (sizeof(fp_record) + FP_RLOCS_MAX * sizeof(fp_rloc))
#define FP_TABLE_RESERVE ((size_t)64 << 30) /* a shared region's default size (sparse) */

/* Room for the largest record, where a reader copies the one it found. */
typedef struct {
    _Alignas(fp_record) uint8_t bytes[FP_RECORD_MAX];
} fp_record_copy;

enum { FP_MAP_PRIVATE = 0, FP_MAP_WRITER = 1, FP_MAP_READER = 2 };

typedef struct {
    int mode;
    lpm_table lpm;          /* private and writer: values are pointers (private) or offsets */
    lpm_mem mem;            /* writer: lpm's arrays come from the region */
    uint8_t *base;          /* writer and reader: the mapping */
    size_t size;            /* its length (the region's, sealed) */
    int fd;                 /* writer: the memfd (owned), handed to readers; else -1 */
    uint64_t top;           /* writer: the bump allocator's next free offset */
    uint64_t free_bytes;    /* writer: bytes on the free lists */
    uint64_t head[64];      /* writer: free list of each power-of-two size class */
    size_t records, record_bytes; /* private and writer */
} fp_map;

typedef struct {
    size_t reserved;  /* the region's size (virtual) */
    size_t allocated; /* bytes handed out by the allocator, freed ones included */
    size_t free;      /* bytes on the free lists */
    size_t resident;  /* pages of the region actually held (the memfd's blocks) */
    uint64_t sequence;
} fp_map_usage;

void fp_map_init(fp_map *m); /* private and empty */
/* Make an empty private table a shared one (writer) of size bytes (0: FP_TABLE_RESERVE);
 * -1 with errno when the region cannot be made: the table stays private. */
int fp_map_share(fp_map *m, size_t size);
/* Make an empty private table a reader of the writer's region fd; -1 with errno (EINVAL: not
 * such a region); the caller keeps fd. */
int fp_map_attach(fp_map *m, int fd);
void fp_map_free(fp_map *m); /* back to private and empty */
/* A writer closes its descriptor (no new reader can attach; the table keeps working). */
void fp_map_close_fd(fp_map *m);

/* Changes (private and writer; a reader refuses them with -1, EPERM).  fp_map_set copies r
 * (r->n RLOCs); -1 with errno (ENOMEM, EINVAL).  fp_map_remove: 1 removed, 0 absent. */
int fp_map_set(fp_map *m, uint32_t iid, int family, const uint8_t *prefix, int plen,
               const fp_record *r);
int fp_map_remove(fp_map *m, uint32_t iid, int family, const uint8_t *prefix, int plen);
int fp_map_clear(fp_map *m);

/* The record of the longest prefix holding addr, or NULL.  A reader copies it to *copy;
 * *busy is set (and NULL returned) when the writer kept changing the table through every
 * retry, so that the caller punts or drops the packet under its own reason. */
const fp_record *fp_map_find(const fp_map *m, uint32_t iid, int family, const uint8_t *addr,
                             fp_record_copy *copy, int *busy);
size_t fp_map_count(const fp_map *m);
size_t fp_map_memory(const fp_map *m); /* bytes this engine holds for the table */
void fp_map_usage_of(const fp_map *m, fp_map_usage *u);

#endif
