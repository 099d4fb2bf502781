/* See packet.h. */
#include "packet.h"

#include <string.h>

#define ECN_MASK 3
#define ECN_NOT_ECT 0
#define ECN_ECT1 1
#define ECN_ECT0 2
#define ECN_CE 3
#define TRACE_PORT 2434

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    crc_ready = 1;
}

uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    if (!crc_ready)
        crc_init();
    uint32_t c = crc ^ 0xFFFFFFFFu;
    while (n--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static inline int port_protocol(int proto)
{
    return proto == PROTO_TCP || proto == PROTO_UDP || proto == PROTO_SCTP;
}

static inline unsigned rd16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }
static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void wr16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void wr32(uint8_t *p, uint32_t v)
{
    wr16(p, v >> 16);
    wr16(p + 2, v & 0xFFFF);
}

int parse_inner(const uint8_t *p, size_t n, inner_flow *f)
{
    if (n < 20)
        return -1;
    int version = p[0] >> 4;
    if (version == 4) {
        size_t ihl = (size_t)(p[0] & 0x0F) * 4;
        if (ihl < 20 || n < ihl || rd16(p + 2) != n)
            return -1;
        unsigned frag = rd16(p + 6);
        f->version = 4;
        f->src = p + 12;
        f->dst = p + 16;
        f->alen = 4;
        f->protocol = p[9];
        f->l3len = (int)ihl;
        f->has_ports = port_protocol(p[9]) && !(frag & 0x3FFF) && n >= ihl + 4;
        f->ports = p + ihl;
        f->ttl = p[8];
        f->tos = p[1];
        f->dont_fragment = (frag & 0x4000) != 0;
        return 0;
    }
    if (version == 6) {
        if (n < 40 || rd16(p + 4) + 40 != n)
            return -1;
        f->version = 6;
        f->src = p + 8;
        f->dst = p + 24;
        f->alen = 16;
        f->protocol = p[6];
        f->l3len = 40;
        f->has_ports = port_protocol(p[6]) && n >= 44;
        f->ports = p + 40;
        f->ttl = p[7];
        f->tos = (p[0] & 0x0F) << 4 | p[1] >> 4;
        f->dont_fragment = 1;
        return 0;
    }
    return -1;
}

uint32_t flow_hash(const inner_flow *f)
{
    uint32_t h = crc32_update((uint32_t)f->protocol, f->src, (size_t)f->alen);
    h = crc32_update(h, f->dst, (size_t)f->alen);
    return f->has_ports ? crc32_update(h, f->ports, 4) : h;
}

const uint8_t *inner_destination(const uint8_t *p, size_t n, int *alen)
{
    if (n < 20)
        return NULL;
    int version = p[0] >> 4;
    if (version == 4) {
        if (rd16(p + 2) != n || (p[0] & 0x0F) < 5)
            return NULL;
        *alen = 4;
        return p + 16;
    }
    if (version == 6 && n >= 40 && rd16(p + 4) + 40 == n) {
        *alen = 16;
        return p + 24;
    }
    return NULL;
}

int is_trace(const uint8_t *p, size_t n)
{
    if (n < 28)
        return 0;
    size_t off;
    int version = p[0] >> 4;
    if (version == 4) {
        if (p[9] != PROTO_UDP || (p[6] & 0x3F) || p[7])
            return 0;
        off = (size_t)(p[0] & 0x0F) << 2;
        if (off < 20 || n < off + 8)
            return 0;
    } else if (version == 6) {
        if (p[6] != PROTO_UDP || n < 48)
            return 0;
        off = 40;
    } else {
        return 0;
    }
    return rd16(p + off) == TRACE_PORT || rd16(p + off + 2) == TRACE_PORT;
}

/* RFC 1624 incremental update of a checksum for one changed 16-bit word. */
static unsigned checksum_adjust(unsigned csum, unsigned old, unsigned new_)
{
    uint32_t total = (~csum & 0xFFFF) + (~old & 0xFFFF) + new_;
    total = (total & 0xFFFF) + (total >> 16);
    total = (total & 0xFFFF) + (total >> 16);
    return ~total & 0xFFFF;
}

/* RFC 6040 normal mode; -1 means drop. */
static int ecn_decapsulate(int outer_tos, int inner_tos)
{
    int outer = outer_tos & ECN_MASK, inner = inner_tos & ECN_MASK;
    if (outer == ECN_CE)
        return inner == ECN_NOT_ECT ? -1 : ECN_CE;
    if (outer == ECN_ECT1 && inner == ECN_ECT0)
        return ECN_ECT1;
    return inner;
}

int fix_on_decap(uint8_t *p, size_t n, int outer_ttl, int outer_tos)
{
    (void)n;
    if (p[0] >> 4 == 4) {
        int ttl = p[8], tos = p[1], ecn = tos & ECN_MASK;
        int new_ecn = ecn_decapsulate(outer_tos, tos);
        if (new_ecn < 0)
            return -1;
        if (ttl <= outer_ttl && new_ecn == ecn)
            return 0;
        unsigned csum = rd16(p + 10);
        if (ttl > outer_ttl) {
            p[8] = (uint8_t)outer_ttl;
            csum = checksum_adjust(csum, (unsigned)ttl << 8 | p[9], (unsigned)outer_ttl << 8 | p[9]);
        }
        if (new_ecn != ecn) {
            int new_tos = (tos & ~ECN_MASK) | new_ecn;
            p[1] = (uint8_t)new_tos;
            csum = checksum_adjust(csum, (unsigned)p[0] << 8 | (unsigned)tos,
                                   (unsigned)p[0] << 8 | (unsigned)new_tos);
        }
        wr16(p + 10, csum);
        return 0;
    }
    int ttl = p[7], tos = (p[0] & 0x0F) << 4 | p[1] >> 4;
    int ecn = ecn_decapsulate(outer_tos, tos);
    if (ecn < 0)
        return -1;
    int new_tos = (tos & ~ECN_MASK) | ecn;
    if (ttl <= outer_ttl && new_tos == tos)
        return 0;
    p[7] = (uint8_t)(ttl < outer_ttl ? ttl : outer_ttl);
    p[0] = (uint8_t)(0x60 | new_tos >> 4);
    p[1] = (uint8_t)((new_tos & 0x0F) << 4 | (p[1] & 0x0F));
    return 0;
}

int decrement_ttl(uint8_t *p, size_t n)
{
    (void)n;
    if (p[0] >> 4 == 4) {
        int ttl = p[8];
        if (ttl <= 1)
            return -1;
        p[8] = (uint8_t)(ttl - 1);
        wr16(p + 10, checksum_adjust(rd16(p + 10), (unsigned)ttl << 8 | p[9],
                                     (unsigned)(ttl - 1) << 8 | p[9]));
        return 0;
    }
    if (p[7] <= 1)
        return -1;
    p[7]--;
    return 0;
}

/* The sum is kept as big-endian 16-bit words (the wire's order) in a 64-bit accumulator. */
uint64_t csum_partial(const uint8_t *p, size_t n, uint64_t sum)
{
    uint64_t s = 0;
    while (n >= 8) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + 4, 4);
        s += (uint64_t)a + b;
        p += 8;
        n -= 8;
    }
    if (n >= 4) {
        uint32_t a;
        memcpy(&a, p, 4);
        s += a;
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        uint16_t a;
        memcpy(&a, p, 2);
        s += a;
        p += 2;
        n -= 2;
    }
    while (s >> 16)
        s = (s & 0xFFFF) + (s >> 16);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    s = __builtin_bswap16((uint16_t)s); /* ones' complement sums commute with byte swaps */
#endif
    sum += s;
    if (n)
        sum += (uint64_t)p[0] << 8;
    return sum;
}

static inline unsigned fold16(uint64_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return (unsigned)sum;
}

uint16_t csum_fold(uint64_t sum) { return (uint16_t)(~fold16(sum) & 0xFFFF); }

int csum_complete(uint8_t *p, size_t n, const vnet_hdr *h)
{
    size_t start = h->csum_start, at = start + h->csum_offset;
    if (at + 2 > n || start >= n)
        return -1;
    unsigned value = csum_fold(csum_partial(p + start, n - start, 0));
    if (value == 0 && h->csum_offset == 6) /* UDP: a computed zero is sent as all ones */
        value = 0xFFFF;
    wr16(p + at, value);
    return 0;
}

/* Pseudo-header sum of a TCP segment of tcp_len bytes in IP packet p. */
static uint64_t pseudo_sum(const uint8_t *p, int version, size_t tcp_len)
{
    uint64_t sum = version == 4 ? csum_partial(p + 12, 8, 0) : csum_partial(p + 8, 32, 0);
    return sum + PROTO_TCP + tcp_len;
}

int tso_segment(const uint8_t *p, size_t n, const vnet_hdr *h, uint8_t *out, size_t stride,
                size_t headroom, size_t *lens, int max)
{
    if (n < 20 || !h->gso_size)
        return -1;
    int version = p[0] >> 4;
    size_t l3;
    if (version == 4) {
        l3 = (size_t)(p[0] & 0x0F) * 4;
        if (l3 < 20 || p[9] != PROTO_TCP)
            return -1;
    } else if (version == 6) {
        l3 = 40;
        if (n < 40 || p[6] != PROTO_TCP)
            return -1;
    } else {
        return -1;
    }
    if (n < l3 + 20)
        return -1;
    size_t l4 = (size_t)(p[l3 + 12] >> 4) * 4;
    size_t hdrs = l3 + l4;
    if (l4 < 20 || hdrs > n)
        return -1;
    size_t payload = n - hdrs, mss = h->gso_size;
    int segs = payload ? (int)((payload + mss - 1) / mss) : 1;
    if (segs > max || headroom + hdrs + mss > stride)
        return -1;
    uint32_t seq = rd32(p + l3 + 4);
    unsigned id = version == 4 ? rd16(p + 4) : 0;
    uint8_t flags = p[l3 + 13];
    for (int k = 0; k < segs; k++) {
        size_t off = (size_t)k * mss;
        size_t len = payload - off < mss ? payload - off : mss;
        uint8_t *o = out + (size_t)k * stride + headroom;
        memcpy(o, p, hdrs);
        memcpy(o + hdrs, p + hdrs + off, len);
        if (version == 4) {
            wr16(o + 2, (unsigned)(hdrs + len));
            wr16(o + 4, (id + (unsigned)k) & 0xFFFF);
            o[10] = o[11] = 0;
            wr16(o + 10, csum_fold(csum_partial(o, l3, 0)));
        } else {
            wr16(o + 4, (unsigned)(l4 + len));
        }
        uint8_t *th = o + l3;
        wr32(th + 4, seq + (uint32_t)off);
        uint8_t f = flags;
        if (k > 0)
            f &= (uint8_t)~0x80; /* CWR on the first segment only */
        if (k < segs - 1)
            f &= (uint8_t)~0x09; /* FIN and PSH on the last one only */
        th[13] = f;
        th[16] = th[17] = 0;
        wr16(th + 16, csum_fold(csum_partial(th, l4 + len, pseudo_sum(o, version, l4 + len))));
        lens[k] = hdrs + len;
    }
    return segs;
}

/* A segment the merger accepts: plain TCP (IPv4 without options, IPv6 without extension
 * headers), unfragmented, with data, flags ACK or ACK+PSH.  Returns the header length. */
static size_t mergeable(const uint8_t *p, size_t n, int *version)
{
    size_t l3;
    if (n < 40)
        return 0;
    if (p[0] == 0x45) {
        if (p[9] != PROTO_TCP || (p[6] & 0x3F) || p[7] || rd16(p + 2) != n)
            return 0;
        l3 = 20;
        *version = 4;
    } else if (p[0] >> 4 == 6) {
        if (p[6] != PROTO_TCP || n < 60 || rd16(p + 4) + 40 != n)
            return 0;
        l3 = 40;
        *version = 6;
    } else {
        return 0;
    }
    size_t l4 = (size_t)(p[l3 + 12] >> 4) * 4;
    uint8_t flags = p[l3 + 13];
    if (l4 < 20 || l3 + l4 >= n || (flags & ~0x18) || !(flags & 0x10))
        return 0;
    /* A merged packet goes to the kernel with its checksum still to compute, which would
     * launder a segment damaged on the way: only segments whose checksum holds merge. */
    if (fold16(csum_partial(p + l3, n - l3, pseudo_sum(p, *version, n - l3))) != 0xFFFF)
        return 0;
    if (*version == 4 && fold16(csum_partial(p, 20, 0)) != 0xFFFF)
        return 0; /* the merged packet's IPv4 header checksum is recomputed */
    return l3 + l4;
}

int tcp_merge_start(tcp_merge *m, const uint8_t *p, size_t n)
{
    int version;
    size_t hdrs = mergeable(p, n, &version);
    if (!hdrs || n + VNET_HDR_LEN > m->cap)
        return 0;
    m->version = version;
    m->l3len = version == 4 ? 20 : 40;
    m->l4len = (int)hdrs - m->l3len;
    memcpy(m->buf + VNET_HDR_LEN, p, n);
    m->len = n;
    m->segs = 1;
    m->mss = (uint16_t)(n - hdrs);
    m->next_seq = rd32(p + m->l3len + 4) + (uint32_t)(n - hdrs);
    m->closed = (p[m->l3len + 13] & 0x08) != 0;
    return 1;
}

int tcp_merge_add(tcp_merge *m, const uint8_t *p, size_t n)
{
    if (!m->len || m->closed || m->segs >= 64)
        return 0;
    int version;
    size_t hdrs = mergeable(p, n, &version);
    const uint8_t *q = m->buf + VNET_HDR_LEN;
    if (!hdrs || version != m->version || hdrs != (size_t)(m->l3len + m->l4len))
        return 0;
    size_t l3 = (size_t)m->l3len, payload = n - hdrs;
    if (payload > m->mss || m->len + payload > 65535 || m->len + payload + VNET_HDR_LEN > m->cap)
        return 0;
    if (version == 4) {
        /* same TOS, DF, TTL, protocol and addresses */
        if (p[1] != q[1] || (p[6] & 0x40) != (q[6] & 0x40) || p[8] != q[8] ||
            memcmp(p + 12, q + 12, 8))
            return 0;
    } else if (memcmp(p, q, 4) || p[7] != q[7] || memcmp(p + 8, q + 8, 32)) {
        return 0;
    }
    const uint8_t *th = p + l3, *qh = q + l3;
    if (memcmp(th, qh, 4) || rd32(th + 4) != m->next_seq || memcmp(th + 8, qh + 8, 5) ||
        memcmp(th + 14, qh + 14, 2) || memcmp(th + 20, qh + 20, (size_t)m->l4len - 20))
        return 0; /* ports, sequence, ack, data offset, window, options */
    memcpy(m->buf + VNET_HDR_LEN + m->len, p + hdrs, payload);
    m->len += payload;
    m->segs++;
    m->next_seq += (uint32_t)payload;
    if (th[13] & 0x08) {
        m->buf[VNET_HDR_LEN + l3 + 13] |= 0x08;
        m->closed = 1;
    }
    if (payload < m->mss)
        m->closed = 1;
    return 1;
}

size_t tcp_merge_finish(tcp_merge *m)
{
    vnet_hdr h;
    memset(&h, 0, sizeof h);
    uint8_t *q = m->buf + VNET_HDR_LEN;
    if (m->segs > 1) {
        size_t l3 = (size_t)m->l3len, tcp_len = m->len - l3;
        if (m->version == 4) {
            wr16(q + 2, (unsigned)m->len);
            q[10] = q[11] = 0;
            wr16(q + 10, csum_fold(csum_partial(q, l3, 0)));
        } else {
            wr16(q + 4, (unsigned)tcp_len);
        }
        /* CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented */
        wr16(q + l3 + 16, fold16(pseudo_sum(q, m->version, tcp_len)));
        h.flags = VNET_F_NEEDS_CSUM;
        h.gso_type = m->version == 4 ? VNET_GSO_TCPV4 : VNET_GSO_TCPV6;
        h.hdr_len = (uint16_t)(l3 + (size_t)m->l4len);
        h.gso_size = m->mss;
        h.csum_start = (uint16_t)l3;
        h.csum_offset = 16;
    }
    memcpy(m->buf, &h, VNET_HDR_LEN);
    size_t total = m->len + VNET_HDR_LEN;
    m->len = 0;
    m->segs = 0;
    m->closed = 0;
    return total;
}
