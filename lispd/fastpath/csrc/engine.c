/* See engine.h. */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
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

static const int overhead[2] = {20 + 8 + 8, 40 + 8 + 8}; /* outer IP + UDP + LISP */

static inline int fam_index(int family) { return family == 6; }

int fp_engine_init(fp_engine *e)
{
    memset(e, 0, sizeof *e);
    e->tun_fd = e->data_fd[0] = e->data_fd[1] = -1;
    e->mtu = 1500;
    e->tun_bufs = malloc((size_t)FP_BATCH * FP_SLOT);
    e->udp_bufs = malloc((size_t)FP_BATCH * FP_SLOT);
    e->seg_buf = malloc(FP_SEG_BUF);
    e->out = malloc(sizeof(fp_out) * FP_OUT_MAX);
    e->merge.cap = 65536 + VNET_HDR_LEN;
    e->merge.buf = malloc(e->merge.cap);
    if (getrandom(&e->nonce_state, sizeof e->nonce_state, 0) != sizeof e->nonce_state)
        e->nonce_state = 0x9E3779B97F4A7C15ULL;
    e->nonce_state |= 1;
    if (!e->tun_bufs || !e->udp_bufs || !e->seg_buf || !e->out || !e->merge.buf) {
        fp_engine_free(e);
        return -1;
    }
    return 0;
}

static void release_record(void *value)
{
    if (value != (void *)1)
        free(value);
}

void fp_engine_free(fp_engine *e)
{
    lpm_clear(&e->map, release_record);
    lpm_clear(&e->db, NULL);
    free(e->tun_bufs);
    free(e->udp_bufs);
    free(e->seg_buf);
    free(e->out);
    free(e->merge.buf);
    e->tun_bufs = e->udp_bufs = e->seg_buf = e->merge.buf = NULL;
    e->out = NULL;
}

static inline uint32_t next_nonce(fp_engine *e)
{
    uint64_t x = e->nonce_state; /* xorshift64*: nonces need to be unpredictable-ish, not secret */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    e->nonce_state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 40);
}

void fp_write_header(fp_engine *e, uint8_t *at, uint32_t iid)
{
    uint32_t nonce = next_nonce(e) & 0xFFFFFF;
    at[0] = 0x88; /* N and I bits */
    at[1] = (uint8_t)(nonce >> 16);
    at[2] = (uint8_t)(nonce >> 8);
    at[3] = (uint8_t)nonce;
    at[4] = (uint8_t)(iid >> 16);
    at[5] = (uint8_t)(iid >> 8);
    at[6] = (uint8_t)iid;
    at[7] = 0;
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
static int classify_flow(fp_engine *e, const inner_flow *fp, const uint8_t *p, size_t n,
                         long iid, int reencap, size_t check_len, fp_dest *d, uint32_t *iid_out)
{
    const inner_flow f = *fp;
    if (multicast(&f) || is_trace(p, n) || e->punt_all)
        return FP_PUNT;
    if (iid < 0) {
        iid = source_instance(e, f.version, f.src);
        if (iid < 0)
            return FP_PUNT; /* not a local EID: a PITR's job, or a drop, for Python to say */
    }
    const fp_record *r = lpm_lookup(&e->map, (uint32_t)iid, f.version, f.dst);
    if (!r || !r->n)
        return FP_PUNT;
    uint32_t h = flow_hash(&f);
    const fp_rloc *rloc = pick(r, h);
    int fi = fam_index(rloc->family);
    if (!reencap && f.dont_fragment && check_len > (size_t)(e->mtu - overhead[fi]))
        return FP_PUNT; /* Python answers with ICMP too-big */
    int fd = rloc->via_data ? e->data_fd[fi] : e->pool_n[fi] ? e->pool[fi][h % e->pool_n[fi]] : -1;
    if (fd < 0)
        return FP_PUNT;
    d->fd = fd;
    d->family = rloc->family;
    d->port = rloc->port;
    memcpy(d->addr, rloc->addr, 16);
    d->ttl = f.ttl;
    d->tos = f.tos;
    *iid_out = (uint32_t)iid;
    return FP_ENCAP;
}

int fp_classify(fp_engine *e, const uint8_t *p, size_t n, long iid, int reencap,
                size_t check_len, fp_dest *d, uint32_t *iid_out)
{
    inner_flow f;
    if (parse_inner(p, n, &f) < 0)
        return FP_PUNT;
    return classify_flow(e, &f, p, n, iid, reencap, check_len, d, iid_out);
}

static void enqueue(fp_engine *e, const fp_dest *d, uint8_t *data, size_t len, size_t inner_len,
                    int role)
{
    if (e->nout == FP_OUT_MAX)
        fp_flush(e);
    fp_out *o = &e->out[e->nout++];
    o->data = data;
    o->len = (uint32_t)len;
    o->inner_len = (uint32_t)inner_len;
    o->fd = d->fd;
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

static size_t put_cmsg(uint8_t *buf, int level, int type, const void *value, size_t len)
{
    struct cmsghdr *c = (struct cmsghdr *)buf;
    c->cmsg_level = level;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(len);
    memcpy(CMSG_DATA(c), value, len);
    return CMSG_SPACE(len);
}

#define FP_GROUPS 256     /* destinations told apart per flush; more share one tail group */
#define FP_GROUP_SLOTS 512

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
    static int gid[FP_OUT_MAX];
    static int slot_group[FP_GROUP_SLOTS]; /* group + 1, 0 free */
    static int rep[FP_GROUPS];             /* a datagram of each group */
    static int order[FP_GROUPS + 1], start[FP_GROUPS + 1], size[FP_GROUPS + 1];
    static fp_out grouped[FP_OUT_MAX];
    int n = e->nout, ngroups = 0, tail = 0;
    if (n < 3)
        return;
    memset(slot_group, 0, sizeof slot_group);
    memset(size, 0, sizeof size);
    for (int i = 0; i < n; i++) {
        const fp_out *o = &e->out[i];
        uint32_t h = dest_hash(o) & (FP_GROUP_SLOTS - 1);
        int g = FP_GROUPS; /* the tail group, once FP_GROUPS are taken */
        for (;;) {
            int s = slot_group[h];
            if (s == 0) {
                if (ngroups < FP_GROUPS) {
                    g = ngroups++;
                    slot_group[h] = g + 1;
                    rep[g] = i;
                }
                break;
            }
            if (same_dest(&e->out[rep[s - 1]], o)) {
                g = s - 1;
                break;
            }
            h = (h + 1) & (FP_GROUP_SLOTS - 1);
        }
        tail |= g == FP_GROUPS;
        gid[i] = g;
        size[g]++;
    }
    if (ngroups == 1 && !tail)
        return;
    /* groups ordered by socket (stable: first seen first), the tail group last */
    for (int g = 0; g < ngroups; g++) {
        int k = g;
        while (k > 0 && e->out[rep[order[k - 1]]].fd > e->out[rep[g]].fd) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = g;
    }
    order[ngroups] = FP_GROUPS;
    int at = 0;
    for (int k = 0; k <= ngroups; k++) {
        start[order[k]] = at;
        at += size[order[k]];
    }
    for (int i = 0; i < n; i++)
        grouped[start[gid[i]]++] = e->out[i];
    memcpy(e->out, grouped, sizeof(fp_out) * (size_t)n);
}

/* TTL, TOS and UDP_SEGMENT: three CMSG_SPACE(4) = 72 bytes on 64-bit Linux */
#define CMSG_BUF 96

void fp_flush(fp_engine *e)
{
    static struct mmsghdr msgs[FP_OUT_MAX];
    static struct iovec iov[FP_OUT_MAX];
    static struct sockaddr_in6 names[FP_OUT_MAX];
    static uint8_t cbuf[FP_OUT_MAX][CMSG_BUF];
    static int first[FP_OUT_MAX + 1], count[FP_OUT_MAX];
    int nmsg = 0;
    group_by_dest(e);
    for (int i = 0; i < e->nout;) {
        const fp_out *o = &e->out[i];
        int j = i + 1;
        size_t total = o->len;
        if (e->gso && o->len + overhead[fam_index(o->family)] - FP_LISP_HDR <= (size_t)e->mtu) {
            while (j < e->nout && j - i < GSO_MAX_SEGS && same_dest(&e->out[j], o) &&
                   e->out[j].len <= o->len && total + e->out[j].len <= GSO_MAX_BYTES) {
                total += e->out[j].len;
                j++;
                if (e->out[j - 1].len < o->len)
                    break; /* a shorter one can only be the last of a GSO burst */
            }
        }
        for (int k = i; k < j; k++) {
            iov[k].iov_base = e->out[k].data;
            iov[k].iov_len = e->out[k].len;
        }
        struct msghdr *m = &msgs[nmsg].msg_hdr;
        memset(m, 0, sizeof *m);
        memset(&names[nmsg], 0, sizeof names[nmsg]);
        if (o->family == 4) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&names[nmsg];
            sin->sin_family = AF_INET;
            sin->sin_port = htons(o->port);
            memcpy(&sin->sin_addr, o->addr, 4);
            m->msg_namelen = sizeof *sin;
        } else {
            names[nmsg].sin6_family = AF_INET6;
            names[nmsg].sin6_port = htons(o->port);
            memcpy(&names[nmsg].sin6_addr, o->addr, 16);
            m->msg_namelen = sizeof names[nmsg];
        }
        m->msg_name = &names[nmsg];
        m->msg_iov = &iov[i];
        m->msg_iovlen = (size_t)(j - i);
        int ttl = o->ttl, tos = o->tos;
        size_t clen = 0;
        uint8_t *c = cbuf[nmsg];
        memset(c, 0, CMSG_BUF);
        if (o->family == 4) {
            clen += put_cmsg(c + clen, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
            clen += put_cmsg(c + clen, IPPROTO_IP, IP_TOS, &tos, sizeof tos);
        } else {
            clen += put_cmsg(c + clen, IPPROTO_IPV6, IPV6_HOPLIMIT, &ttl, sizeof ttl);
            clen += put_cmsg(c + clen, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof tos);
        }
        if (j - i > 1) {
            uint16_t seg = (uint16_t)o->len;
            clen += put_cmsg(c + clen, SOL_UDP, UDP_SEGMENT, &seg, sizeof seg);
            e->c.gso_sends++;
        }
        m->msg_control = c;
        m->msg_controllen = clen;
        first[nmsg] = i;
        count[nmsg] = j - i;
        nmsg++;
        i = j;
    }
    /* sendmmsg takes one socket: send each run of messages that share one. */
    for (int k = 0; k < nmsg;) {
        int fd = e->out[first[k]].fd, end = k + 1;
        while (end < nmsg && e->out[first[end]].fd == fd)
            end++;
        while (k < end) {
            int r = sendmmsg(fd, &msgs[k], (unsigned)(end - k), MSG_DONTWAIT);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                e->c.send_failed += (uint64_t)count[k]; /* this message failed: skip it */
                e->c.last_send_errno = (uint64_t)errno;
                k++;
                continue;
            }
            for (int q = k; q < k + r; q++)
                count_sent(e, &e->out[first[q]], count[q]);
            k += r;
        }
    }
    e->nout = 0;
}

static int seen_source(fp_engine *e, const struct sockaddr_storage *src)
{
    fp_seen key;
    memset(&key, 0, sizeof key);
    if (src->ss_family == AF_INET) {
        key.family = 4;
        memcpy(key.addr, &((const struct sockaddr_in *)src)->sin_addr, 4);
    } else {
        key.family = 6;
        memcpy(key.addr, &((const struct sockaddr_in6 *)src)->sin6_addr, 16);
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

static int tun_write_plain(fp_engine *e, const uint8_t *p, size_t n)
{
    static const uint8_t zero[VNET_HDR_LEN];
    ssize_t r;
    if (e->vnet) {
        struct iovec v[2] = {{(void *)zero, VNET_HDR_LEN}, {(void *)p, n}};
        r = writev(e->tun_fd, v, 2);
    } else {
        r = write(e->tun_fd, p, n);
    }
    return r < 0 ? -1 : 0;
}

static void merge_flush(fp_engine *e)
{
    if (!e->merge.len)
        return;
    int segs = e->merge.segs;
    size_t total = tcp_merge_finish(&e->merge);
    if (write(e->tun_fd, e->merge.buf, total) < 0) {
        e->c.tun_write_failed += (uint64_t)segs;
    } else {
        e->c.etr_decap_packets += (uint64_t)segs;
        e->c.etr_decap_bytes += e->merge_bytes;
        if (segs > 1)
            e->c.merged_writes++;
    }
    e->merge_bytes = 0;
}

static void to_tun(fp_engine *e, const uint8_t *p, size_t n)
{
    if (e->vnet && e->gso) {
        if (tcp_merge_add(&e->merge, p, n)) {
            e->merge_bytes += n;
            if (e->merge.closed)
                merge_flush(e);
            return;
        }
        merge_flush(e);
        if (tcp_merge_start(&e->merge, p, n)) {
            e->merge_bytes = n;
            if (e->merge.closed)
                merge_flush(e);
            return;
        }
    }
    if (tun_write_plain(e, p, n) < 0) {
        e->c.tun_write_failed++;
    } else {
        e->c.etr_decap_packets++;
        e->c.etr_decap_bytes += n;
    }
}

int fp_datagram_decision(fp_engine *e, uint8_t *d, size_t n, int ttl, int tos, fp_dest *dest,
                         int *source_known, const struct sockaddr_storage *src)
{
    if (n <= FP_LISP_HDR || (d[0] & 0x03))
        return FP_PUNT; /* truncated, or encrypted (key-id bits) */
    uint32_t iid = d[0] & 0x08 ? (uint32_t)d[4] << 16 | (uint32_t)d[5] << 8 | d[6] : 0;
    if (iid == 0xFFFFFF)
        return FP_PUNT; /* a control message in the data path */
    uint8_t *inner = d + FP_LISP_HDR;
    size_t m = n - FP_LISP_HDR;
    int alen;
    const uint8_t *dst = inner_destination(inner, m, &alen);
    if (!dst || is_trace(inner, m))
        return FP_PUNT;
    int family = alen == 4 ? 4 : 6;
    if (e->etr && lpm_lookup(&e->db, iid, family, dst)) {
        if (source_known && !*source_known) {
            *source_known = 1; /* from here on it is in the set (or the set is full) */
            if (!seen_source(e, src))
                return FP_PUNT; /* Python remembers new ITRs (to SMR them) */
        }
        if (fix_on_decap(inner, m, ttl, tos) < 0)
            return FP_PUNT;
        return FP_TO_TUN;
    }
    if (!e->rtr)
        return FP_PUNT;
    if (fix_on_decap(inner, m, ttl, tos) < 0)
        return FP_PUNT; /* unchanged on failure, and idempotent: Python redoes it */
    inner_flow f;
    if (parse_inner(inner, m, &f) < 0 || f.ttl <= 1)
        return FP_PUNT;
    uint32_t chosen;
    if (classify_flow(e, &f, inner, m, (long)iid, 1, m, dest, &chosen) != FP_ENCAP)
        return FP_PUNT;
    decrement_ttl(inner, m);
    dest->ttl = f.ttl - 1;
    fp_write_header(e, d, chosen);
    return FP_REENCAP;
}

int fp_from_udp(fp_engine *e, int fd, int budget, fp_punt_udp punt, void *ctx)
{
    static struct mmsghdr msgs[FP_BATCH];
    static struct iovec iov[FP_BATCH];
    static struct sockaddr_storage names[FP_BATCH];
    static uint8_t cbuf[FP_BATCH][128];
    for (int round = 0; round < budget; round++) {
        for (int i = 0; i < FP_BATCH; i++) {
            iov[i].iov_base = e->udp_bufs + (size_t)i * FP_SLOT + FP_HEADROOM;
            iov[i].iov_len = FP_SLOT - FP_HEADROOM;
            struct msghdr *m = &msgs[i].msg_hdr;
            memset(m, 0, sizeof *m);
            m->msg_name = &names[i];
            m->msg_namelen = sizeof names[i];
            m->msg_iov = &iov[i];
            m->msg_iovlen = 1;
            m->msg_control = cbuf[i];
            m->msg_controllen = sizeof cbuf[i];
        }
        int r = recvmmsg(fd, msgs, FP_BATCH, MSG_DONTWAIT, NULL);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR || errno == ECONNREFUSED || errno == EHOSTUNREACH ||
                errno == ENETUNREACH || errno == EMSGSIZE)
                continue; /* an ICMP error for something we sent, reported here */
            return -1;
        }
        for (int i = 0; i < r; i++) {
            struct msghdr *m = &msgs[i].msg_hdr;
            int ttl = 64, tos = 0, seg = 0;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
                int v = 0;
                if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
                    memcpy(&v, CMSG_DATA(c), sizeof v);
                    seg = v;
                } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) {
                    memcpy(&v, CMSG_DATA(c), sizeof v);
                    ttl = v;
                } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) {
                    tos = *(uint8_t *)CMSG_DATA(c);
                } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT) {
                    memcpy(&v, CMSG_DATA(c), sizeof v);
                    ttl = v;
                } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS) {
                    memcpy(&v, CMSG_DATA(c), sizeof v);
                    tos = v;
                }
            }
            uint8_t *base = iov[i].iov_base;
            size_t len = msgs[i].msg_len;
            if (m->msg_flags & MSG_TRUNC)
                continue;
            if (seg <= 0 || (size_t)seg > len)
                seg = len ? (int)len : 1;
            else
                e->c.gro_datagrams++;
            /* an empty datagram still goes round once: Python counts it as truncated */
            int source_known = 0; /* the segments of one message share its source */
            for (size_t off = 0; off < len || (off == 0 && len == 0); off += (size_t)seg) {
                size_t n = len - off < (size_t)seg ? len - off : (size_t)seg;
                uint8_t *d = base + off;
                fp_dest dest;
                int what = fp_datagram_decision(e, d, n, ttl, tos, &dest, &source_known, &names[i]);
                if (what == FP_TO_TUN) {
                    to_tun(e, d + FP_LISP_HDR, n - FP_LISP_HDR);
                } else if (what == FP_REENCAP) {
                    enqueue(e, &dest, d, n, n, 1);
                } else {
                    e->c.punted_udp++;
                    /* Python handles it now (when the caller gave a handler): what came
                     * before it leaves first, so a flow stays in order */
                    merge_flush(e);
                    fp_flush(e);
                    if (punt(ctx, d, n, ttl, tos, &names[i]) < 0)
                        return -2; /* a Python exception */
                }
            }
        }
        merge_flush(e);
        fp_flush(e);
        if (r < FP_BATCH)
            break;
    }
    return 0;
}

static int punt_segments(fp_engine *e, const uint8_t *p, size_t n, const vnet_hdr *h,
                         fp_punt_tun punt, void *ctx)
{
    static size_t lens[FP_SEG_MAX];
    size_t stride = FP_HEADROOM + 120 + h->gso_size; /* headers are at most 60 + 60 bytes */
    int max = (int)(FP_SEG_BUF / stride);
    int segs = tso_segment(p, n, h, e->seg_buf, stride, FP_HEADROOM, lens,
                           max < FP_SEG_MAX ? max : FP_SEG_MAX);
    if (segs < 0) {
        e->c.tso_unsupported++;
        return 0;
    }
    fp_flush(e); /* what came before leaves first (and nothing queued points into seg_buf) */
    for (int k = 0; k < segs; k++) {
        e->c.punted_tun++;
        if (punt(ctx, e->seg_buf + (size_t)k * stride + FP_HEADROOM, lens[k]) < 0)
            return -1;
    }
    return 0;
}

/* A TCP super-packet from the TUN: segmented once, each segment encapsulated, all of them
 * queued back to back so that the flush sends them as UDP GSO bursts. */
static int from_tun_super(fp_engine *e, uint8_t *p, size_t n, const vnet_hdr *h,
                          fp_punt_tun punt, void *ctx)
{
    static size_t lens[FP_SEG_MAX];
    e->c.tun_superpackets++;
    size_t l3 = (p[0] >> 4) == 4 ? (size_t)(p[0] & 0x0F) * 4 : 40;
    size_t hdrs = n > l3 + 13 ? l3 + (size_t)(p[l3 + 12] >> 4) * 4 : n;
    fp_dest d;
    uint32_t iid;
    if (fp_classify(e, p, n, -1, 0, hdrs + h->gso_size, &d, &iid) != FP_ENCAP)
        return punt_segments(e, p, n, h, punt, ctx);
    fp_flush(e); /* the segment buffer is reused: what points into it must be gone */
    size_t stride = FP_LISP_HDR + hdrs + h->gso_size;
    int max = (int)(FP_SEG_BUF / stride);
    int segs = tso_segment(p, n, h, e->seg_buf, stride, FP_LISP_HDR, lens,
                           max < FP_SEG_MAX ? max : FP_SEG_MAX);
    if (segs < 0) {
        e->c.tso_unsupported++;
        return 0;
    }
    for (int k = 0; k < segs; k++) {
        uint8_t *at = e->seg_buf + (size_t)k * stride;
        fp_write_header(e, at, iid);
        enqueue(e, &d, at, FP_LISP_HDR + lens[k], lens[k], 0);
    }
    fp_flush(e);
    return 0;
}

int fp_from_tun(fp_engine *e, int budget, fp_punt_tun punt, void *ctx)
{
    size_t in_off = e->vnet ? FP_HEADROOM - VNET_HDR_LEN : FP_HEADROOM;
    for (int round = 0; round < budget; round++) {
        int k;
        for (k = 0; k < FP_BATCH; k++) {
            uint8_t *slot = e->tun_bufs + (size_t)k * FP_SLOT;
            ssize_t r = read(e->tun_fd, slot + in_off, FP_SLOT - in_off);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                fp_flush(e);
                return -1;
            }
            uint8_t *p = slot + FP_HEADROOM;
            size_t n = (size_t)r - (FP_HEADROOM - in_off);
            if ((size_t)r < FP_HEADROOM - in_off)
                continue;
            vnet_hdr h;
            memset(&h, 0, sizeof h);
            if (e->vnet) {
                memcpy(&h, slot + in_off, VNET_HDR_LEN);
                if ((h.gso_type & ~VNET_GSO_ECN) != VNET_GSO_NONE) {
                    if (from_tun_super(e, p, n, &h, punt, ctx) < 0)
                        return -2;
                    continue;
                }
                if ((h.flags & VNET_F_NEEDS_CSUM) && csum_complete(p, n, &h) < 0) {
                    e->c.tso_unsupported++;
                    continue;
                }
            }
            fp_dest d;
            uint32_t iid;
            if (fp_classify(e, p, n, -1, 0, n, &d, &iid) == FP_ENCAP) {
                fp_write_header(e, p - FP_LISP_HDR, iid);
                enqueue(e, &d, p - FP_LISP_HDR, n + FP_LISP_HDR, n, 0);
            } else {
                e->c.punted_tun++;
                fp_flush(e); /* in order: what was read before leaves first */
                if (punt(ctx, p, n) < 0)
                    return -2;
            }
        }
        fp_flush(e);
        if (k < FP_BATCH)
            break;
    }
    return 0;
}
