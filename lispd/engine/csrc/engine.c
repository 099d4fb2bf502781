/* See engine.h. */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sched.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 65000

/* Under AddressSanitizer the part of a receive slot past the bytes received is poisoned, so a
 * parser reading past a packet is reported even though the slot (64 KB) is one allocation. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SLOT_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SLOT_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SLOT_POISON(p, n) ((void)(p), (void)(n))
#define SLOT_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

_Static_assert(FP_CMSG_OUT % _Alignof(struct cmsghdr) == 0, "cmsg rows stay aligned");
_Static_assert(FP_CMSG_IN % _Alignof(struct cmsghdr) == 0, "cmsg rows stay aligned");
_Static_assert(3 * CMSG_SPACE(sizeof(int)) <= FP_CMSG_OUT, "room for TTL, TOS, UDP_SEGMENT");
_Static_assert(FP_HEADROOM >= VNET_HDR_LEN && FP_HEADROOM >= FP_LISP_HDR, "headroom");

static const int overhead[2] = {20 + 8 + 8, 40 + 8 + 8}; /* outer IP + UDP + LISP */

static inline int fam_index(int family) { return family == 6; }

int fp_engine_init(fp_engine *e)
{
    memset(e, 0, sizeof *e);
    fp_map_init(&e->map);
    e->tun_fd = -1;
    for (int fi = 0; fi < 2; fi++)
        e->data[fi].fd = e->data[fi].given = -1;
    e->mtu = 1500;
    e->tun_bufs = malloc((size_t)FP_BATCH * FP_SLOT);
    e->udp_bufs = malloc((size_t)FP_BATCH * FP_SLOT);
    e->seg_buf = malloc(FP_SEG_BUF);
    e->out = malloc(sizeof(fp_out) * FP_OUT_MAX);
    e->tx = malloc(sizeof *e->tx);
    e->rx = malloc(sizeof *e->rx);
    e->merge.cap = 65536 + VNET_HDR_LEN;
    e->merge.buf = malloc(e->merge.cap);
    if (getrandom(&e->nonce_state, sizeof e->nonce_state, 0) != sizeof e->nonce_state)
        e->nonce_state = 0x9E3779B97F4A7C15ULL;
    e->nonce_state |= 1;
    if (!e->tun_bufs || !e->udp_bufs || !e->seg_buf || !e->out || !e->tx || !e->rx ||
        !e->merge.buf) {
        fp_engine_free(e);
        return -1;
    }
    return 0;
}

static void close_owned(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void fp_close_descriptors(fp_engine *e)
{
    close_owned(&e->tun_fd);
    fp_map_close_fd(&e->map);
    for (int fi = 0; fi < 2; fi++) {
        for (int i = 0; i < e->pool_n[fi]; i++)
            close_owned(&e->pool[fi][i].fd);
        e->pool_n[fi] = 0;
        close_owned(&e->data[fi].fd);
        e->data[fi].given = -1;
    }
}

void fp_engine_free(fp_engine *e)
{
    fp_map_free(&e->map);
    lpm_clear(&e->db, NULL);
    free(e->tun_bufs);
    free(e->udp_bufs);
    free(e->seg_buf);
    free(e->out);
    free(e->tx);
    free(e->rx);
    free(e->merge.buf);
    e->tun_bufs = e->udp_bufs = e->seg_buf = e->merge.buf = NULL;
    e->out = NULL;
    e->tx = NULL;
    e->rx = NULL;
    fp_close_descriptors(e);
}

/* --- descriptors ------------------------------------------------------------------------------ */

static int own(int fd) { return fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 0); }

int fp_set_tun(fp_engine *e, int fd)
{
    int mine = own(fd);
    if (fd >= 0 && mine < 0)
        return -1;
    close_owned(&e->tun_fd);
    e->tun_fd = mine;
    return 0;
}

int fp_set_pool(fp_engine *e, int family, const int *fds, int n)
{
    if ((family != 4 && family != 6) || n < 0 || n > FP_POOL_MAX) {
        errno = EINVAL;
        return -1;
    }
    fp_socket mine[FP_POOL_MAX];
    for (int i = 0; i < n; i++) {
        mine[i].given = fds[i];
        mine[i].fd = own(fds[i]);
        if (mine[i].fd < 0) {
            int saved = fds[i] < 0 ? EBADF : errno;
            for (int k = 0; k < i; k++)
                close(mine[k].fd);
            errno = saved;
            return -1;
        }
    }
    int fi = fam_index(family);
    for (int i = 0; i < e->pool_n[fi]; i++)
        close_owned(&e->pool[fi][i].fd);
    memcpy(e->pool[fi], mine, sizeof(fp_socket) * (size_t)n);
    e->pool_n[fi] = n;
    return 0;
}

int fp_set_data_socket(fp_engine *e, int family, int fd)
{
    if (family != 4 && family != 6) {
        errno = EINVAL;
        return -1;
    }
    int mine = own(fd);
    if (fd >= 0 && mine < 0)
        return -1;
    fp_socket *s = &e->data[fam_index(family)];
    close_owned(&s->fd);
    s->fd = mine;
    s->given = mine < 0 ? -1 : fd;
    return 0;
}

/* --- decisions -------------------------------------------------------------------------------- */

static inline uint32_t next_nonce(fp_engine *e)
{
    uint64_t x = e->nonce_state; /* xorshift64*: nonces need to be unpredictable-ish, not secret */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    e->nonce_state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 40);
}

int fp_write_header(fp_engine *e, wcursor at, uint32_t iid)
{
    uint8_t *h = wcur_peek(at, 0, FP_LISP_HDR);
    if (!h)
        return -1;
    uint32_t nonce = next_nonce(e) & 0xFFFFFF;
    h[0] = 0x88; /* N and I bits */
    h[1] = (uint8_t)(nonce >> 16);
    h[2] = (uint8_t)(nonce >> 8);
    h[3] = (uint8_t)nonce;
    h[4] = (uint8_t)(iid >> 16);
    h[5] = (uint8_t)(iid >> 8);
    h[6] = (uint8_t)iid;
    h[7] = 0;
    return 0;
}

static inline int multicast(const inner_flow *f)
{
    return f->version == 6 ? f->dst[0] == 0xFF : f->dst[0] >= 224;
}

/* The lowest instance-ID whose local database holds src (as Itr.instance_for_source). */
static long source_instance(const fp_engine *e, int family, const uint8_t *src)
{
    size_t n;
    const lpm_scope *scopes = lpm_scopes(&e->db, &n);
    for (size_t i = 0; i < n; i++)
        if (scopes[i].family == family && lpm_lookup(&e->db, scopes[i].iid, family, src))
            return (long)scopes[i].iid;
    return -1;
}

static const fp_rloc *pick(const fp_record *r, uint32_t h)
{
    if (r->n == 1)
        return &r->rloc[0];
    if (!r->total_weight)
        return &r->rloc[h % r->n];
    int64_t point = h % r->total_weight;
    for (int i = 0; i < r->n; i++) {
        point -= r->rloc[i].weight;
        if (point < 0)
            return &r->rloc[i];
    }
    return &r->rloc[r->n - 1];
}

/* fp_classify on a packet already parsed into f (the RTR has done it). */
static int classify_flow(fp_engine *e, const inner_flow *fp, cursor c, long iid, int reencap,
                         size_t check_len, fp_dest *d, uint32_t *iid_out)
{
    const inner_flow f = *fp;
    if (multicast(&f) || is_trace(c) || e->punt_all)
        return FP_PUNT;
    if (iid < 0) {
        iid = source_instance(e, f.version, f.src);
        if (iid < 0)
            return FP_PUNT; /* not a local EID: a PITR's job, or a drop, for Python to say */
    }
    int busy;
    const fp_record *r = fp_map_find(&e->map, (uint32_t)iid, f.version, f.dst, &e->record, &busy);
    if (busy)
        e->c.punted_table_busy++;
    if (!r || !r->n)
        return FP_PUNT;
    uint32_t h = flow_hash(&f);
    const fp_rloc *rloc = pick(r, h);
    int fi = fam_index(rloc->family);
    if (!reencap && f.dont_fragment && check_len > (size_t)(e->mtu - overhead[fi]))
        return FP_PUNT; /* Python answers with ICMP too-big */
    const fp_socket *s = rloc->via_data  ? &e->data[fi]
                         : e->pool_n[fi] ? &e->pool[fi][h % (uint32_t)e->pool_n[fi]]
                                         : NULL;
    if (!s || s->fd < 0)
        return FP_PUNT;
    d->fd = s->fd;
    d->given = s->given;
    d->family = rloc->family;
    d->all_down = r->all_down;
    d->port = rloc->port;
    memcpy(d->addr, rloc->addr, 16);
    d->ttl = f.ttl;
    d->tos = f.tos;
    *iid_out = (uint32_t)iid;
    return FP_ENCAP;
}

int fp_classify(fp_engine *e, cursor c, long iid, int reencap, size_t check_len, fp_dest *d,
                uint32_t *iid_out)
{
    inner_flow f;
    if (parse_inner(c, &f) < 0)
        return FP_PUNT;
    return classify_flow(e, &f, c, iid, reencap, check_len, d, iid_out);
}

/* --- sending ---------------------------------------------------------------------------------- */

static void enqueue(fp_engine *e, const fp_dest *d, uint8_t *data, size_t len, size_t inner_len,
                    int role)
{
    if (e->nout == FP_OUT_MAX)
        fp_flush(e);
    if (d->all_down) {
        e->c.all_down_packets++;
        e->c.all_down_bytes += inner_len;
    }
    fp_out *o = &e->out[e->nout++];
    o->data = data;
    o->len = (uint32_t)len;
    o->inner_len = (uint32_t)inner_len;
    o->fd = d->fd;
    o->given = d->given;
    o->port = d->port;
    o->family = d->family;
    o->ttl = (uint8_t)d->ttl;
    o->tos = (uint8_t)d->tos;
    o->role = (uint8_t)role;
    memcpy(o->addr, d->addr, 16);
}

static inline int same_dest(const fp_out *a, const fp_out *b)
{
    return a->fd == b->fd && a->port == b->port && a->ttl == b->ttl && a->tos == b->tos &&
           a->family == b->family && memcmp(a->addr, b->addr, 16) == 0;
}

static void count_sent(fp_engine *e, const fp_out *o, int k)
{
    for (int i = 0; i < k; i++) {
        if (o[i].role) {
            e->c.rtr_reencap_packets++;
            e->c.rtr_reencap_bytes += o[i].inner_len;
        } else {
            e->c.itr_encap_packets++;
            e->c.itr_encap_bytes += o[i].inner_len;
        }
    }
}

/* One control message at buf (room bytes, aligned); its CMSG_SPACE, or 0 when it does not fit. */
static size_t put_cmsg(uint8_t *buf, size_t room, int level, int type, const void *value,
                       size_t len)
{
    if (CMSG_SPACE(len) > room)
        return 0;
    struct cmsghdr *c = (struct cmsghdr *)(void *)buf;
    c->cmsg_level = level;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(len);
    memcpy(CMSG_DATA(c), value, len);
    return CMSG_SPACE(len);
}

static inline uint32_t dest_hash(const fp_out *o)
{
    uint32_t h = (uint32_t)o->fd * 0x9E3779B1u ^ o->port ^ ((uint32_t)o->ttl << 16) ^
                 ((uint32_t)o->tos << 24);
    for (int i = 0; i < 16; i += 4) {
        uint32_t w;
        memcpy(&w, o->addr + i, 4);
        h = (h ^ w) * 0x85EBCA6Bu;
    }
    return h ^ (h >> 15);
}

/* Put the queued datagrams of one socket and destination next to each other, keeping their
 * order (a flow has one socket and one destination, so no flow is reordered): interleaved
 * flows would otherwise leave no run to send as one GSO burst and split sendmmsg into one
 * call per datagram.  Destinations are grouped in the order of their sockets. */
static void group_by_dest(fp_engine *e)
{
    fp_tx *t = e->tx;
    int n = e->nout, ngroups = 0, tail = 0;
    if (n < 3)
        return;
    memset(t->slot_group, 0, sizeof t->slot_group);
    memset(t->size, 0, sizeof t->size);
    for (int i = 0; i < n; i++) {
        const fp_out *o = &e->out[i];
        uint32_t h = dest_hash(o) & (FP_GROUP_SLOTS - 1);
        int g = FP_GROUPS; /* the tail group, once FP_GROUPS are taken */
        for (;;) {
            int s = t->slot_group[h];
            if (s == 0) {
                if (ngroups < FP_GROUPS) {
                    g = ngroups++;
                    t->slot_group[h] = g + 1;
                    t->rep[g] = i;
                }
                break;
            }
            if (same_dest(&e->out[t->rep[s - 1]], o)) {
                g = s - 1;
                break;
            }
            h = (h + 1) & (FP_GROUP_SLOTS - 1);
        }
        tail |= g == FP_GROUPS;
        t->gid[i] = g;
        t->size[g]++;
    }
    if (ngroups == 1 && !tail)
        return;
    /* groups ordered by socket (stable: first seen first), the tail group last */
    for (int g = 0; g < ngroups; g++) {
        int k = g;
        while (k > 0 && e->out[t->rep[t->order[k - 1]]].fd > e->out[t->rep[g]].fd) {
            t->order[k] = t->order[k - 1];
            k--;
        }
        t->order[k] = g;
    }
    t->order[ngroups] = FP_GROUPS;
    int at = 0;
    for (int k = 0; k <= ngroups; k++) {
        t->start[t->order[k]] = at;
        at += t->size[t->order[k]];
    }
    for (int i = 0; i < n; i++)
        t->grouped[t->start[t->gid[i]]++] = e->out[i];
    memcpy(e->out, t->grouped, sizeof(fp_out) * (size_t)n);
}

/* sendmmsg on fd, or the sink's send for each message: how many went, or -1 with errno. */
static int send_messages(fp_engine *e, int fd, int given, struct mmsghdr *msgs, unsigned n)
{
    if (!e->sink.send)
        return sendmmsg(fd, msgs, n, MSG_DONTWAIT);
    for (unsigned i = 0; i < n; i++)
        if (e->sink.send(e->sink.ctx, given, &msgs[i].msg_hdr) < 0)
            return i ? (int)i : -1;
    return (int)n;
}

/* A run to this destination may leave as one UDP GSO burst: GSO for every RLOC, or this one
 * is a peer known to take bursts. */
static int gso_to(const fp_engine *e, const fp_out *o)
{
    if (e->gso)
        return 1;
    size_t n = o->family == 4 ? 4 : 16;
    for (int i = 0; i < e->ngso_peers; i++)
        if (e->gso_peer_family[i] == o->family && memcmp(e->gso_peer[i], o->addr, n) == 0)
            return 1;
    return 0;
}

void fp_flush(fp_engine *e)
{
    fp_tx *t = e->tx;
    int nmsg = 0;
    group_by_dest(e);
    for (int i = 0; i < e->nout;) {
        const fp_out *o = &e->out[i];
        int j = i + 1;
        size_t total = o->len;
        if (o->len + overhead[fam_index(o->family)] - FP_LISP_HDR <= (size_t)e->mtu &&
            gso_to(e, o)) {
            while (j < e->nout && j - i < GSO_MAX_SEGS && same_dest(&e->out[j], o) &&
                   e->out[j].len <= o->len && total + e->out[j].len <= GSO_MAX_BYTES) {
                total += e->out[j].len;
                j++;
                if (e->out[j - 1].len < o->len)
                    break; /* a shorter one can only be the last of a GSO burst */
            }
        }
        for (int k = i; k < j; k++) {
            t->iov[k].iov_base = e->out[k].data;
            t->iov[k].iov_len = e->out[k].len;
        }
        struct msghdr *m = &t->msgs[nmsg].msg_hdr;
        struct sockaddr_in6 *name = &t->names[nmsg];
        memset(m, 0, sizeof *m);
        memset(name, 0, sizeof *name);
        if (o->family == 4) {
            struct sockaddr_in sin;
            memset(&sin, 0, sizeof sin);
            sin.sin_family = AF_INET;
            sin.sin_port = htons(o->port);
            memcpy(&sin.sin_addr, o->addr, 4);
            memcpy(name, &sin, sizeof sin);
            m->msg_namelen = sizeof sin;
        } else {
            name->sin6_family = AF_INET6;
            name->sin6_port = htons(o->port);
            memcpy(&name->sin6_addr, o->addr, 16);
            m->msg_namelen = sizeof *name;
        }
        m->msg_name = name;
        m->msg_iov = &t->iov[i];
        m->msg_iovlen = (size_t)(j - i);
        int ttl = o->ttl, tos = o->tos;
        size_t clen = 0;
        uint8_t *c = t->cbuf[nmsg];
        memset(c, 0, FP_CMSG_OUT);
        if (o->family == 4) {
            clen += put_cmsg(c + clen, FP_CMSG_OUT - clen, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
            clen += put_cmsg(c + clen, FP_CMSG_OUT - clen, IPPROTO_IP, IP_TOS, &tos, sizeof tos);
        } else {
            clen += put_cmsg(c + clen, FP_CMSG_OUT - clen, IPPROTO_IPV6, IPV6_HOPLIMIT, &ttl,
                             sizeof ttl);
            clen += put_cmsg(c + clen, FP_CMSG_OUT - clen, IPPROTO_IPV6, IPV6_TCLASS, &tos,
                             sizeof tos);
        }
        if (j - i > 1) {
            uint16_t seg = (uint16_t)o->len;
            clen += put_cmsg(c + clen, FP_CMSG_OUT - clen, SOL_UDP, UDP_SEGMENT, &seg, sizeof seg);
            e->c.gso_sends++;
        }
        m->msg_control = c;
        m->msg_controllen = clen;
        t->first[nmsg] = i;
        t->count[nmsg] = j - i;
        nmsg++;
        i = j;
    }
    /* sendmmsg takes one socket: send each run of messages that share one. */
    for (int k = 0; k < nmsg;) {
        const fp_out *head = &e->out[t->first[k]];
        int fd = head->fd, end = k + 1;
        while (end < nmsg && e->out[t->first[end]].fd == fd)
            end++;
        while (k < end) {
            int r = send_messages(e, fd, head->given, &t->msgs[k], (unsigned)(end - k));
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                e->c.send_failed += (uint64_t)t->count[k]; /* this message failed: skip it */
                e->c.last_send_errno = (uint64_t)errno;
                k++;
                continue;
            }
            for (int q = k; q < k + r; q++)
                count_sent(e, &e->out[t->first[q]], t->count[q]);
            k += r;
        }
    }
    e->nout = 0;
}

/* --- the ETR side ----------------------------------------------------------------------------- */

static int seen_source(fp_engine *e, const struct sockaddr_storage *src)
{
    fp_seen key;
    memset(&key, 0, sizeof key);
    if (src->ss_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, src, sizeof sin);
        key.family = 4;
        memcpy(key.addr, &sin.sin_addr, 4);
    } else {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, src, sizeof sin6);
        key.family = 6;
        memcpy(key.addr, &sin6.sin6_addr, 16);
    }
    uint32_t h = crc32_update(key.family, key.addr, 16);
    for (size_t i = h & (FP_SEEN_SLOTS - 1);; i = (i + 1) & (FP_SEEN_SLOTS - 1)) {
        fp_seen *slot = &e->seen[i];
        if (!slot->family)
            break;
        if (slot->family == key.family && !memcmp(slot->addr, key.addr, 16))
            return 1;
    }
    if (e->nseen == FP_SEEN)
        return 1; /* full: Python's own list of recent ITRs is bounded the same */
    for (size_t i = h & (FP_SEEN_SLOTS - 1);; i = (i + 1) & (FP_SEEN_SLOTS - 1))
        if (!e->seen[i].family) {
            e->seen[i] = key;
            break;
        }
    e->nseen++;
    return 0;
}

/* One TUN write of the iovecs: 0, or -1 when it failed or wrote less than all of it. */
static int tun_writev(fp_engine *e, const struct iovec *v, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += v[i].iov_len;
    ssize_t r = e->sink.tun_write ? e->sink.tun_write(e->sink.ctx, v, n) : writev(e->tun_fd, v, n);
    return r >= 0 && (size_t)r == total ? 0 : -1;
}

static int tun_write_plain(fp_engine *e, cursor c)
{
    static const uint8_t zero[VNET_HDR_LEN]; /* read-only */
    struct iovec v[2] = {{(void *)zero, VNET_HDR_LEN}, {(void *)c.p, c.len}};
    return e->vnet ? tun_writev(e, v, 2) : tun_writev(e, v + 1, 1);
}

static void merge_flush(fp_engine *e)
{
    if (!e->merge.len)
        return;
    int segs = e->merge.segs;
    size_t total = tcp_merge_finish(&e->merge);
    struct iovec v = {e->merge.buf, total};
    if (tun_writev(e, &v, 1) < 0) {
        e->c.tun_write_failed += (uint64_t)segs;
    } else {
        e->c.etr_decap_packets += (uint64_t)segs;
        e->c.etr_decap_bytes += e->merge_bytes;
        if (segs > 1)
            e->c.merged_writes++;
    }
    e->merge_bytes = 0;
}

/* With a virtio-net TUN, consecutive TCP segments of a flow go to the TUN as one merged
 * super-packet: a receive-side offload between the engine and its own kernel, independent of
 * UDP GSO on send (which the next hop sees). */
static void to_tun(fp_engine *e, cursor c)
{
    if (e->vnet) {
        if (tcp_merge_add(&e->merge, c)) {
            e->merge_bytes += c.len;
            if (e->merge.closed)
                merge_flush(e);
            return;
        }
        merge_flush(e);
        if (tcp_merge_start(&e->merge, c)) {
            e->merge_bytes = c.len;
            if (e->merge.closed)
                merge_flush(e);
            return;
        }
    }
    if (tun_write_plain(e, c) < 0) {
        e->c.tun_write_failed++;
    } else {
        e->c.etr_decap_packets++;
        e->c.etr_decap_bytes += c.len;
    }
}

int fp_datagram_decision(fp_engine *e, wcursor d, int ttl, int tos, fp_dest *dest,
                         int *source_known, const struct sockaddr_storage *src)
{
    lisp_hdr lh;
    wcursor inner;
    if (d.len <= FP_LISP_HDR || parse_lisp_header(cur_of(d), &lh) < 0 || (lh.flags & 0x03) ||
        !wcur_rest(d, FP_LISP_HDR, &inner))
        return FP_PUNT; /* truncated, or encrypted (key-id bits) */
    if (lh.iid == 0xFFFFFF)
        return FP_PUNT; /* a control message in the data path */
    int alen;
    const uint8_t *dst = inner_destination(cur_of(inner), &alen);
    if (!dst || is_trace(cur_of(inner)))
        return FP_PUNT;
    int family = alen == 4 ? 4 : 6;
    if (e->etr && lpm_lookup(&e->db, lh.iid, family, dst)) {
        if (source_known && !*source_known) {
            *source_known = 1; /* from here on it is in the set (or the set is full) */
            if (!seen_source(e, src))
                return FP_PUNT; /* Python remembers new ITRs (to SMR them) */
        }
        if (fix_on_decap(inner, ttl, tos) != PKT_OK)
            return FP_PUNT;
        return FP_TO_TUN;
    }
    if (!e->rtr)
        return FP_PUNT;
    if (fix_on_decap(inner, ttl, tos) != PKT_OK)
        return FP_PUNT; /* unchanged on failure, and idempotent: Python redoes it */
    inner_flow f;
    if (parse_inner(cur_of(inner), &f) < 0 || f.ttl <= 1)
        return FP_PUNT;
    uint32_t chosen;
    if (classify_flow(e, &f, cur_of(inner), (long)lh.iid, 1, inner.len, dest, &chosen) != FP_ENCAP)
        return FP_PUNT;
    if (decrement_ttl(inner) != PKT_OK || fp_write_header(e, d, chosen) < 0)
        return FP_PUNT; /* cannot happen: the TTL is above 1, the header is there */
    dest->ttl = f.ttl - 1;
    return FP_REENCAP;
}

/* The TTL, TOS and GRO segment size the kernel reported for one message. */
static void read_cmsgs(struct msghdr *m, int *ttl, int *tos, int *seg)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        int v = 0;
        if (c->cmsg_len < CMSG_LEN(1))
            continue;
        size_t have = c->cmsg_len - CMSG_LEN(0); /* bytes of data */
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) {
            *tos = *(const uint8_t *)CMSG_DATA(c); /* one byte */
            continue;
        }
        if (have < sizeof v)
            continue;
        memcpy(&v, CMSG_DATA(c), sizeof v);
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO)
            *seg = v;
        else if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) ||
                 (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT))
            *ttl = v;
        else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS)
            *tos = v;
    }
}

/* The datagrams a message of len bytes holds, cut at seg bytes (an empty one counts once). */
static uint64_t datagrams_in(size_t len, int seg)
{
    if (seg <= 0 || (size_t)seg >= len)
        return 1;
    return (len + (size_t)seg - 1) / (size_t)seg;
}

void fp_end_batch(fp_engine *e)
{
    merge_flush(e);
    fp_flush(e);
}

uint8_t *fp_udp_slot(fp_engine *e, int k)
{
    uint8_t *slot = e->udp_bufs + (size_t)k * FP_SLOT;
    SLOT_UNPOISON(slot, FP_SLOT);
    return slot + FP_HEADROOM;
}

int fp_udp_message(fp_engine *e, int k, size_t len, int flags, int ttl, int tos, int seg,
                   const struct sockaddr_storage *src, fp_punt_udp punt, void *ctx)
{
    if (flags & MSG_TRUNC) {
        e->c.udp_truncated += datagrams_in(len, seg);
        return 0;
    }
    if (flags & MSG_CTRUNC) {
        e->c.udp_ctrunc++; /* no GRO size: where its datagrams end is unknown */
        return 0;
    }
    wcursor msg;
    if (k < 0 || k >= FP_BATCH || len > FP_SLOT - FP_HEADROOM ||
        !wcur_sub(wcur_make(e->udp_bufs, (size_t)FP_BATCH * FP_SLOT),
                  (size_t)k * FP_SLOT + FP_HEADROOM, len, &msg))
        return 0; /* not a slot: callers pass their own */
    SLOT_POISON(msg.p + len, FP_SLOT - FP_HEADROOM - len);
    if (seg <= 0 || (size_t)seg > len)
        seg = len ? (int)len : 1;
    else
        e->c.gro_datagrams++;
    /* an empty datagram still goes round once: Python counts it as truncated */
    int source_known = 0; /* the segments of one message share its source */
    for (size_t off = 0; off < len || (off == 0 && len == 0); off += (size_t)seg) {
        size_t n = len - off < (size_t)seg ? len - off : (size_t)seg;
        wcursor d;
        if (!wcur_sub(msg, off, n, &d))
            break;
        fp_dest dest;
        int what = fp_datagram_decision(e, d, ttl, tos, &dest, &source_known, src);
        if (what == FP_TO_TUN) {
            cursor inner;
            if (cur_rest(cur_of(d), FP_LISP_HDR, &inner))
                to_tun(e, inner);
        } else if (what == FP_REENCAP) {
            enqueue(e, &dest, d.p, d.len, d.len, 1);
        } else {
            e->c.punted_udp++;
            /* Python handles it now (when the caller gave a handler): what came
             * before it leaves first, so a flow stays in order */
            fp_end_batch(e);
            if (punt(ctx, d.p, d.len, ttl, tos, src) < 0) {
                e->c.punt_aborted += datagrams_in(len - off - n, seg) - (off + n >= len);
                return -2; /* a Python exception */
            }
        }
    }
    return 0;
}

/* A source address the punt handler can name: IPv4 or IPv6, else the unspecified [::]:0. */
static void normalise_source(struct sockaddr_storage *s, socklen_t len)
{
    if ((s->ss_family == AF_INET && len >= sizeof(struct sockaddr_in)) ||
        (s->ss_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)))
        return;
    memset(s, 0, sizeof *s);
    s->ss_family = AF_INET6;
}

int fp_from_udp(fp_engine *e, int fd, int budget, fp_punt_udp punt, void *ctx)
{
    fp_rx *x = e->rx;
    for (int round = 0; round < budget; round++) {
        for (int i = 0; i < FP_BATCH; i++) {
            x->iov[i].iov_base = fp_udp_slot(e, i);
            x->iov[i].iov_len = FP_SLOT - FP_HEADROOM;
            struct msghdr *m = &x->msgs[i].msg_hdr;
            memset(m, 0, sizeof *m);
            m->msg_name = &x->names[i];
            m->msg_namelen = sizeof x->names[i];
            m->msg_iov = &x->iov[i];
            m->msg_iovlen = 1;
            m->msg_control = x->cbuf[i];
            m->msg_controllen = sizeof x->cbuf[i];
        }
        int r = recvmmsg(fd, x->msgs, FP_BATCH, MSG_DONTWAIT, NULL);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR || errno == ECONNREFUSED || errno == EHOSTUNREACH ||
                errno == ENETUNREACH || errno == EMSGSIZE)
                continue; /* an ICMP error for something we sent, reported here */
            return -1;
        }
        e->received += (uint64_t)r;
        for (int i = 0; i < r; i++) {
            struct msghdr *m = &x->msgs[i].msg_hdr;
            int ttl = 64, tos = 0, seg = 0;
            read_cmsgs(m, &ttl, &tos, &seg);
            normalise_source(&x->names[i], m->msg_namelen);
            size_t len = x->msgs[i].msg_len;
            if (fp_udp_message(e, i, len, m->msg_flags, ttl, tos, seg, &x->names[i], punt, ctx) <
                0) {
                for (int k = i + 1; k < r; k++) { /* read, and now left: counted */
                    int kseg = 0, kttl, ktos;
                    read_cmsgs(&x->msgs[k].msg_hdr, &kttl, &ktos, &kseg);
                    e->c.punt_aborted += datagrams_in(x->msgs[k].msg_len, kseg);
                }
                fp_end_batch(e);
                return -2;
            }
        }
        fp_end_batch(e);
        if (r < FP_BATCH)
            break;
    }
    return 0;
}

/* --- the ITR side ----------------------------------------------------------------------------- */

/* A super-packet Python must take: its segments, each punted (they fit the MTU). */
static int punt_segments(fp_engine *e, cursor c, const vnet_hdr *h, fp_punt_tun punt, void *ctx)
{
    size_t stride = FP_HEADROOM + 120 + h->gso_size; /* headers are at most 60 + 60 bytes */
    int max = (int)(FP_SEG_BUF / stride);
    int segs = tso_segment(c, h, e->seg_buf, FP_SEG_BUF, stride, FP_HEADROOM, e->seg_lens,
                           max < FP_SEG_MAX ? max : FP_SEG_MAX);
    if (segs < 0) {
        e->c.tso_unsupported++;
        return 0;
    }
    fp_flush(e); /* what came before leaves first (and nothing queued points into seg_buf) */
    for (int k = 0; k < segs; k++) {
        e->c.punted_tun++;
        if (punt(ctx, e->seg_buf + (size_t)k * stride + FP_HEADROOM, e->seg_lens[k]) < 0) {
            e->c.punt_aborted += (uint64_t)(segs - k - 1);
            return -1;
        }
    }
    return 0;
}

/* A TCP super-packet from the TUN: segmented once, each segment encapsulated, all of them
 * queued back to back so that the flush sends them as UDP GSO bursts. */
static int from_tun_super(fp_engine *e, cursor c, const vnet_hdr *h, fp_punt_tun punt,
                          void *ctx)
{
    e->c.tun_superpackets++;
    tcp_hdrs t;
    if (tcp_headers(c, &t) < 0) {
        e->c.tso_unsupported++; /* not TCP this code can split */
        return 0;
    }
    if ((h->gso_type & ~VNET_GSO_ECN) != (t.version == 4 ? VNET_GSO_TCPV4 : VNET_GSO_TCPV6)) {
        e->c.tun_bad_vnet++; /* TCPv4 segmentation of an IPv6 packet, or the other way */
        return 0;
    }
    size_t hdrs = t.l3 + t.l4;
    fp_dest d;
    uint32_t iid;
    if (fp_classify(e, c, -1, 0, hdrs + h->gso_size, &d, &iid) != FP_ENCAP)
        return punt_segments(e, c, h, punt, ctx);
    fp_flush(e); /* the segment buffer is reused: what points into it must be gone */
    size_t stride = FP_LISP_HDR + hdrs + h->gso_size;
    int max = (int)(FP_SEG_BUF / stride);
    int segs = tso_segment(c, h, e->seg_buf, FP_SEG_BUF, stride, FP_LISP_HDR, e->seg_lens,
                           max < FP_SEG_MAX ? max : FP_SEG_MAX);
    if (segs < 0) {
        e->c.tso_unsupported++;
        return 0;
    }
    for (int k = 0; k < segs; k++) {
        wcursor at = wcur_make(e->seg_buf + (size_t)k * stride, FP_LISP_HDR + e->seg_lens[k]);
        if (fp_write_header(e, at, iid) == 0)
            enqueue(e, &d, at.p, at.len, e->seg_lens[k], 0);
    }
    fp_flush(e);
    return 0;
}

size_t fp_tun_read_offset(const fp_engine *e)
{
    return e->vnet ? FP_HEADROOM - VNET_HDR_LEN : FP_HEADROOM;
}

size_t fp_tun_read_room(const fp_engine *e) { return FP_SLOT - fp_tun_read_offset(e); }

uint8_t *fp_tun_slot(fp_engine *e, int k)
{
    uint8_t *slot = e->tun_bufs + (size_t)k * FP_SLOT;
    SLOT_UNPOISON(slot, FP_SLOT);
    return slot + fp_tun_read_offset(e);
}

int fp_tun_packet(fp_engine *e, int k, size_t r, fp_punt_tun punt, void *ctx)
{
    size_t in_off = fp_tun_read_offset(e), room = fp_tun_read_room(e);
    if (k < 0 || k >= FP_BATCH)
        return 0;
    if (r >= room) {
        e->c.tun_read_truncated++; /* longer than any packet: cut, or not a packet */
        return 0;
    }
    uint8_t *slot = e->tun_bufs + (size_t)k * FP_SLOT;
    SLOT_POISON(slot + in_off + r, room - r);
    wcursor read = wcur_make(slot + in_off, r), pkt = read;
    if (e->vnet) {
        vnet_hdr h;
        if (parse_vnet(cur_of(read), &h) < 0) {
            e->c.tun_read_short++;
            return 0;
        }
        if (!wcur_rest(read, VNET_HDR_LEN, &pkt) || vnet_check(&h) < 0) {
            e->c.tun_bad_vnet++;
            return 0;
        }
        if ((h.gso_type & ~VNET_GSO_ECN) != VNET_GSO_NONE)
            return from_tun_super(e, cur_of(pkt), &h, punt, ctx) < 0 ? -2 : 0;
        if ((h.flags & VNET_F_NEEDS_CSUM) && csum_complete(pkt, &h) < 0) {
            e->c.tun_bad_vnet++; /* checksum offsets outside the packet */
            return 0;
        }
    }
    /* the packet sits at slot + FP_HEADROOM: the LISP header goes in front of it */
    fp_dest d;
    uint32_t iid;
    if (fp_classify(e, cur_of(pkt), -1, 0, pkt.len, &d, &iid) == FP_ENCAP) {
        wcursor out = wcur_make(pkt.p - FP_LISP_HDR, pkt.len + FP_LISP_HDR);
        if (fp_write_header(e, out, iid) == 0)
            enqueue(e, &d, out.p, out.len, pkt.len, 0);
        return 0;
    }
    e->c.punted_tun++;
    fp_flush(e); /* in order: what was read before leaves first */
    return punt(ctx, pkt.p, pkt.len) < 0 ? -2 : 0;
}

int fp_from_tun(fp_engine *e, int budget, fp_punt_tun punt, void *ctx)
{
    size_t room = fp_tun_read_room(e);
    if (e->tun_fd < 0) {
        errno = EBADF;
        return -1;
    }
    for (int round = 0; round < budget; round++) {
        int k;
        for (k = 0; k < FP_BATCH; k++) {
            ssize_t r = read(e->tun_fd, fp_tun_slot(e, k), room);
            if (r < 0) {
                if (errno == EINTR) {
                    k--; /* the slot is still free */
                    continue;
                }
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                int saved = errno;
                fp_flush(e);
                errno = saved;
                return -1;
            }
            e->received++;
            if (fp_tun_packet(e, k, (size_t)r, punt, ctx) < 0) {
                fp_flush(e);
                return -2;
            }
        }
        fp_flush(e);
        if (k < FP_BATCH)
            break;
    }
    return 0;
}

/* --- adaptive busy-polling -------------------------------------------------------------------- */

static uint64_t monotonic_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int fp_busy_poll(fp_engine *e, const int *fds, int nfds, fp_punt_tun punt_tun, void *tun_ctx,
                 fp_punt_udp punt_udp, void *udp_ctx)
{
    if (e->busy_poll_us == 0)
        return 0;
    uint64_t idle = (uint64_t)e->busy_poll_us * 1000u;
    uint64_t start = monotonic_ns(), last = start;
    uint64_t cap = start + (uint64_t)FP_BUSY_POLL_CAP_US * 1000u;
    e->c.busy_polls++;
    for (;;) {
        uint64_t before = e->received;
        int r = e->tun_fd >= 0 ? fp_from_tun(e, 1, punt_tun, tun_ctx) : 0;
        for (int i = 0; r == 0 && i < nfds; i++)
            r = fp_from_udp(e, fds[i], 1, punt_udp, udp_ctx);
        if (r < 0)
            return r;
        uint64_t now = monotonic_ns();
        if (e->received != before) {
            e->c.busy_poll_packets += e->received - before;
            last = now;
        } else if (now - last >= idle) {
            return 0;
        } else {
            /* A process woken on this CPU (the peer this spin waits for, often) runs now,
             * not when the spin ends: without this a spin holds up what it waits for. */
            sched_yield();
        }
        if (now >= cap)
            return 0;
    }
}
