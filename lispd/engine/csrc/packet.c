/* See packet.h.  Every read of packet bytes goes through a cursor (cursor.h); a fixed header
 * is peeked as one span and read at constant offsets inside it, every variable offset is
 * checked again. */
#include "packet.h"

#include <stdbool.h>
#include <string.h>

#define ECN_MASK 3
#define ECN_NOT_ECT 0
#define ECN_ECT1 1
#define ECN_ECT0 2
#define ECN_CE 3
#define TRACE_PORT 2434
#define IPV4_MIN 20
#define IPV6_LEN 40
#define TCP_MIN 20
#define UDP_LEN 8

/* zlib's CRC-32 (reflected polynomial 0xEDB88320), a compile-time constant: no lazy
 * initialisation, nothing written after load, the same in every engine and thread. */
static const uint32_t crc_table[256] = {
    0x00000000u, 0x77073096u, 0xEE0E612Cu, 0x990951BAu, 0x076DC419u, 0x706AF48Fu,
    0xE963A535u, 0x9E6495A3u, 0x0EDB8832u, 0x79DCB8A4u, 0xE0D5E91Eu, 0x97D2D988u,
    0x09B64C2Bu, 0x7EB17CBDu, 0xE7B82D07u, 0x90BF1D91u, 0x1DB71064u, 0x6AB020F2u,
    0xF3B97148u, 0x84BE41DEu, 0x1ADAD47Du, 0x6DDDE4EBu, 0xF4D4B551u, 0x83D385C7u,
    0x136C9856u, 0x646BA8C0u, 0xFD62F97Au, 0x8A65C9ECu, 0x14015C4Fu, 0x63066CD9u,
    0xFA0F3D63u, 0x8D080DF5u, 0x3B6E20C8u, 0x4C69105Eu, 0xD56041E4u, 0xA2677172u,
    0x3C03E4D1u, 0x4B04D447u, 0xD20D85FDu, 0xA50AB56Bu, 0x35B5A8FAu, 0x42B2986Cu,
    0xDBBBC9D6u, 0xACBCF940u, 0x32D86CE3u, 0x45DF5C75u, 0xDCD60DCFu, 0xABD13D59u,
    0x26D930ACu, 0x51DE003Au, 0xC8D75180u, 0xBFD06116u, 0x21B4F4B5u, 0x56B3C423u,
    0xCFBA9599u, 0xB8BDA50Fu, 0x2802B89Eu, 0x5F058808u, 0xC60CD9B2u, 0xB10BE924u,
    0x2F6F7C87u, 0x58684C11u, 0xC1611DABu, 0xB6662D3Du, 0x76DC4190u, 0x01DB7106u,
    0x98D220BCu, 0xEFD5102Au, 0x71B18589u, 0x06B6B51Fu, 0x9FBFE4A5u, 0xE8B8D433u,
    0x7807C9A2u, 0x0F00F934u, 0x9609A88Eu, 0xE10E9818u, 0x7F6A0DBBu, 0x086D3D2Du,
    0x91646C97u, 0xE6635C01u, 0x6B6B51F4u, 0x1C6C6162u, 0x856530D8u, 0xF262004Eu,
    0x6C0695EDu, 0x1B01A57Bu, 0x8208F4C1u, 0xF50FC457u, 0x65B0D9C6u, 0x12B7E950u,
    0x8BBEB8EAu, 0xFCB9887Cu, 0x62DD1DDFu, 0x15DA2D49u, 0x8CD37CF3u, 0xFBD44C65u,
    0x4DB26158u, 0x3AB551CEu, 0xA3BC0074u, 0xD4BB30E2u, 0x4ADFA541u, 0x3DD895D7u,
    0xA4D1C46Du, 0xD3D6F4FBu, 0x4369E96Au, 0x346ED9FCu, 0xAD678846u, 0xDA60B8D0u,
    0x44042D73u, 0x33031DE5u, 0xAA0A4C5Fu, 0xDD0D7CC9u, 0x5005713Cu, 0x270241AAu,
    0xBE0B1010u, 0xC90C2086u, 0x5768B525u, 0x206F85B3u, 0xB966D409u, 0xCE61E49Fu,
    0x5EDEF90Eu, 0x29D9C998u, 0xB0D09822u, 0xC7D7A8B4u, 0x59B33D17u, 0x2EB40D81u,
    0xB7BD5C3Bu, 0xC0BA6CADu, 0xEDB88320u, 0x9ABFB3B6u, 0x03B6E20Cu, 0x74B1D29Au,
    0xEAD54739u, 0x9DD277AFu, 0x04DB2615u, 0x73DC1683u, 0xE3630B12u, 0x94643B84u,
    0x0D6D6A3Eu, 0x7A6A5AA8u, 0xE40ECF0Bu, 0x9309FF9Du, 0x0A00AE27u, 0x7D079EB1u,
    0xF00F9344u, 0x8708A3D2u, 0x1E01F268u, 0x6906C2FEu, 0xF762575Du, 0x806567CBu,
    0x196C3671u, 0x6E6B06E7u, 0xFED41B76u, 0x89D32BE0u, 0x10DA7A5Au, 0x67DD4ACCu,
    0xF9B9DF6Fu, 0x8EBEEFF9u, 0x17B7BE43u, 0x60B08ED5u, 0xD6D6A3E8u, 0xA1D1937Eu,
    0x38D8C2C4u, 0x4FDFF252u, 0xD1BB67F1u, 0xA6BC5767u, 0x3FB506DDu, 0x48B2364Bu,
    0xD80D2BDAu, 0xAF0A1B4Cu, 0x36034AF6u, 0x41047A60u, 0xDF60EFC3u, 0xA867DF55u,
    0x316E8EEFu, 0x4669BE79u, 0xCB61B38Cu, 0xBC66831Au, 0x256FD2A0u, 0x5268E236u,
    0xCC0C7795u, 0xBB0B4703u, 0x220216B9u, 0x5505262Fu, 0xC5BA3BBEu, 0xB2BD0B28u,
    0x2BB45A92u, 0x5CB36A04u, 0xC2D7FFA7u, 0xB5D0CF31u, 0x2CD99E8Bu, 0x5BDEAE1Du,
    0x9B64C2B0u, 0xEC63F226u, 0x756AA39Cu, 0x026D930Au, 0x9C0906A9u, 0xEB0E363Fu,
    0x72076785u, 0x05005713u, 0x95BF4A82u, 0xE2B87A14u, 0x7BB12BAEu, 0x0CB61B38u,
    0x92D28E9Bu, 0xE5D5BE0Du, 0x7CDCEFB7u, 0x0BDBDF21u, 0x86D3D2D4u, 0xF1D4E242u,
    0x68DDB3F8u, 0x1FDA836Eu, 0x81BE16CDu, 0xF6B9265Bu, 0x6FB077E1u, 0x18B74777u,
    0x88085AE6u, 0xFF0F6A70u, 0x66063BCAu, 0x11010B5Cu, 0x8F659EFFu, 0xF862AE69u,
    0x616BFFD3u, 0x166CCF45u, 0xA00AE278u, 0xD70DD2EEu, 0x4E048354u, 0x3903B3C2u,
    0xA7672661u, 0xD06016F7u, 0x4969474Du, 0x3E6E77DBu, 0xAED16A4Au, 0xD9D65ADCu,
    0x40DF0B66u, 0x37D83BF0u, 0xA9BCAE53u, 0xDEBB9EC5u, 0x47B2CF7Fu, 0x30B5FFE9u,
    0xBDBDF21Cu, 0xCABAC28Au, 0x53B39330u, 0x24B4A3A6u, 0xBAD03605u, 0xCDD70693u,
    0x54DE5729u, 0x23D967BFu, 0xB3667A2Eu, 0xC4614AB8u, 0x5D681B02u, 0x2A6F2B94u,
    0xB40BBE37u, 0xC30C8EA1u, 0x5A05DF1Bu, 0x2D02EF8Du,
};

uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    uint32_t c = crc ^ 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static inline int port_protocol(unsigned proto)
{
    return proto == PROTO_TCP || proto == PROTO_UDP || proto == PROTO_SCTP;
}

static inline int version_of(cursor c)
{
    unsigned b0;
    return peek_u8(c, 0, &b0) ? (int)(b0 >> 4) : -1;
}

int parse_inner(cursor c, inner_flow *f)
{
    size_t n = c.len;
    int version = version_of(c);
    if (version == 4) {
        const uint8_t *h = cur_peek(c, 0, IPV4_MIN);
        if (!h)
            return -1;
        size_t ihl = (size_t)(h[0] & 0x0F) * 4;
        if (ihl < IPV4_MIN || n < ihl || span_u16(h, 2) != n)
            return -1;
        unsigned frag = span_u16(h, 6);
        f->version = 4;
        f->src = h + 12;
        f->dst = h + 16;
        f->alen = 4;
        f->protocol = h[9];
        f->l3len = (int)ihl;
        f->ports = cur_peek(c, ihl, 4);
        f->has_ports = port_protocol(h[9]) && !(frag & 0x3FFF) && f->ports != NULL;
        f->ttl = h[8];
        f->tos = h[1];
        f->dont_fragment = (frag & 0x4000) != 0;
        return 0;
    }
    if (version == 6) {
        const uint8_t *h = cur_peek(c, 0, IPV6_LEN);
        if (!h || span_u16(h, 4) + IPV6_LEN != n)
            return -1;
        f->version = 6;
        f->src = h + 8;
        f->dst = h + 24;
        f->alen = 16;
        f->protocol = h[6];
        f->l3len = IPV6_LEN;
        f->ports = cur_peek(c, IPV6_LEN, 4);
        f->has_ports = port_protocol(h[6]) && f->ports != NULL;
        f->ttl = h[7];
        f->tos = (h[0] & 0x0F) << 4 | h[1] >> 4;
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

const uint8_t *inner_destination(cursor c, int *alen)
{
    int version = version_of(c);
    if (version == 4) {
        const uint8_t *h = cur_peek(c, 0, IPV4_MIN);
        if (!h || span_u16(h, 2) != c.len || (h[0] & 0x0F) < 5)
            return NULL;
        *alen = 4;
        return h + 16;
    }
    if (version == 6) {
        const uint8_t *h = cur_peek(c, 0, IPV6_LEN);
        if (!h || span_u16(h, 4) + IPV6_LEN != c.len)
            return NULL;
        *alen = 16;
        return h + 24;
    }
    return NULL;
}

int is_trace(cursor c)
{
    if (c.len < IPV4_MIN + UDP_LEN)
        return 0;
    size_t off;
    int version = version_of(c);
    if (version == 4) {
        const uint8_t *h = cur_peek(c, 0, IPV4_MIN);
        if (!h || h[9] != PROTO_UDP || (h[6] & 0x3F) || h[7])
            return 0;
        off = (size_t)(h[0] & 0x0F) << 2;
        if (off < IPV4_MIN)
            return 0;
    } else if (version == 6) {
        const uint8_t *h = cur_peek(c, 0, IPV6_LEN);
        if (!h || h[6] != PROTO_UDP)
            return 0;
        off = IPV6_LEN;
    } else {
        return 0;
    }
    const uint8_t *udp = cur_peek(c, off, UDP_LEN);
    return udp && (span_u16(udp, 0) == TRACE_PORT || span_u16(udp, 2) == TRACE_PORT);
}

int parse_lisp_header(cursor c, lisp_hdr *h)
{
    const uint8_t *b = cur_peek(c, 0, LISP_HDR_LEN);
    if (!b)
        return -1;
    h->flags = b[0];
    h->iid = b[0] & 0x08 ? (uint32_t)b[4] << 16 | (uint32_t)b[5] << 8 | b[6] : 0;
    return 0;
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

int fix_on_decap(wcursor w, int outer_ttl, int outer_tos)
{
    int version = version_of(cur_of(w));
    if (version == 4) {
        uint8_t *h = wcur_peek(w, 0, IPV4_MIN);
        if (!h)
            return PKT_MALFORMED;
        int ttl = h[8], tos = h[1], ecn = tos & ECN_MASK;
        int new_ecn = ecn_decapsulate(outer_tos, tos);
        if (new_ecn < 0)
            return PKT_DROP;
        if (ttl <= outer_ttl && new_ecn == ecn)
            return PKT_OK;
        unsigned csum = span_u16(h, 10);
        if (ttl > outer_ttl) {
            h[8] = (uint8_t)outer_ttl;
            csum = checksum_adjust(csum, (unsigned)ttl << 8 | h[9], (unsigned)outer_ttl << 8 | h[9]);
        }
        if (new_ecn != ecn) {
            int new_tos = (tos & ~ECN_MASK) | new_ecn;
            h[1] = (uint8_t)new_tos;
            csum = checksum_adjust(csum, (unsigned)h[0] << 8 | (unsigned)tos,
                                   (unsigned)h[0] << 8 | (unsigned)new_tos);
        }
        h[10] = (uint8_t)(csum >> 8);
        h[11] = (uint8_t)csum;
        return PKT_OK;
    }
    if (version != 6)
        return PKT_MALFORMED;
    uint8_t *h = wcur_peek(w, 0, IPV6_LEN);
    if (!h)
        return PKT_MALFORMED;
    int ttl = h[7], tos = (h[0] & 0x0F) << 4 | h[1] >> 4;
    int ecn = ecn_decapsulate(outer_tos, tos);
    if (ecn < 0)
        return PKT_DROP;
    int new_tos = (tos & ~ECN_MASK) | ecn;
    if (ttl <= outer_ttl && new_tos == tos)
        return PKT_OK;
    h[7] = (uint8_t)(ttl < outer_ttl ? ttl : outer_ttl);
    h[0] = (uint8_t)(0x60 | new_tos >> 4);
    h[1] = (uint8_t)((new_tos & 0x0F) << 4 | (h[1] & 0x0F));
    return PKT_OK;
}

int decrement_ttl(wcursor w)
{
    int version = version_of(cur_of(w));
    if (version == 4) {
        uint8_t *h = wcur_peek(w, 0, IPV4_MIN);
        if (!h)
            return PKT_MALFORMED;
        int ttl = h[8];
        if (ttl <= 1)
            return PKT_DROP;
        h[8] = (uint8_t)(ttl - 1);
        unsigned csum = checksum_adjust(span_u16(h, 10), (unsigned)ttl << 8 | h[9],
                                        (unsigned)(ttl - 1) << 8 | h[9]);
        h[10] = (uint8_t)(csum >> 8);
        h[11] = (uint8_t)csum;
        return PKT_OK;
    }
    if (version != 6)
        return PKT_MALFORMED;
    uint8_t *h = wcur_peek(w, 0, IPV6_LEN);
    if (!h)
        return PKT_MALFORMED;
    if (h[7] <= 1)
        return PKT_DROP;
    h[7]--;
    return PKT_OK;
}

/* The sum is kept as big-endian 16-bit words (the wire's order) in a 64-bit accumulator.
 * Long runs are summed as 64-bit words in four independent accumulators, each counting its
 * own carries (2^64 and 2^32 are both 1 modulo 2^16 - 1, so carries and halves simply add):
 * about four times the speed of 32-bit steps, and this sum is most of the CPU a TCP flow
 * costs the engine (each segment's checksum on the ITR, each one verified on the ETR). */
uint64_t csum_partial(const uint8_t *p, size_t n, uint64_t sum)
{
    uint64_t s = 0;
    if (n >= 32) {
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, carries = 0;
        while (n >= 32) {
            uint64_t a, b, c, d;
            memcpy(&a, p, 8);
            memcpy(&b, p + 8, 8);
            memcpy(&c, p + 16, 8);
            memcpy(&d, p + 24, 8);
            s0 += a;
            carries += s0 < a;
            s1 += b;
            carries += s1 < b;
            s2 += c;
            carries += s2 < c;
            s3 += d;
            carries += s3 < d;
            p += 32;
            n -= 32;
        }
        s = (s0 & 0xFFFFFFFFu) + (s0 >> 32) + (s1 & 0xFFFFFFFFu) + (s1 >> 32) +
            (s2 & 0xFFFFFFFFu) + (s2 >> 32) + (s3 & 0xFFFFFFFFu) + (s3 >> 32) + carries;
    }
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

int parse_vnet(cursor c, vnet_hdr *h)
{
    const uint8_t *b = cur_peek(c, 0, VNET_HDR_LEN);
    if (!b)
        return -1;
    h->flags = b[0];
    h->gso_type = b[1];
    return peek_u16_ne(c, 2, &h->hdr_len) && peek_u16_ne(c, 4, &h->gso_size) &&
                   peek_u16_ne(c, 6, &h->csum_start) && peek_u16_ne(c, 8, &h->csum_offset)
               ? 0
               : -1;
}

int vnet_check(const vnet_hdr *h)
{
    int type = h->gso_type & ~VNET_GSO_ECN;
    if (type == VNET_GSO_NONE)
        return 0;
    if ((type != VNET_GSO_TCPV4 && type != VNET_GSO_TCPV6) || h->gso_size == 0)
        return -1;
    return 0;
}

int csum_complete(wcursor w, const vnet_hdr *h)
{
    size_t start = h->csum_start, at = start + h->csum_offset;
    wcursor covered;
    if (!wcur_has(w, at, 2) || !wcur_rest(w, start, &covered) || covered.len == 0)
        return -1;
    unsigned value = csum_fold(csum_partial(covered.p, covered.len, 0));
    if (value == 0 && h->csum_offset == 6) /* UDP: a computed zero is sent as all ones */
        value = 0xFFFF;
    return poke_u16(w, at, value) ? 0 : -1;
}

/* Pseudo-header sum of a TCP segment of tcp_len bytes in IP packet ip. */
static bool pseudo_sum(cursor ip, int version, size_t tcp_len, uint64_t *sum)
{
    const uint8_t *a = version == 4 ? cur_peek(ip, 12, 8) : cur_peek(ip, 8, 32);
    if (!a)
        return false;
    *sum = csum_partial(a, version == 4 ? 8 : 32, 0) + PROTO_TCP + tcp_len;
    return true;
}

int tcp_headers(cursor c, tcp_hdrs *t)
{
    int version = version_of(c);
    size_t l3;
    if (version == 4) {
        const uint8_t *h = cur_peek(c, 0, IPV4_MIN);
        if (!h || h[9] != PROTO_TCP)
            return -1;
        l3 = (size_t)(h[0] & 0x0F) * 4;
        if (l3 < IPV4_MIN)
            return -1;
    } else if (version == 6) {
        const uint8_t *h = cur_peek(c, 0, IPV6_LEN);
        if (!h || h[6] != PROTO_TCP)
            return -1;
        l3 = IPV6_LEN;
    } else {
        return -1;
    }
    const uint8_t *th = cur_peek(c, l3, TCP_MIN);
    if (!th)
        return -1;
    size_t l4 = (size_t)(th[12] >> 4) * 4;
    if (l4 < TCP_MIN || !cur_has(c, l3, l4))
        return -1;
    t->version = version;
    t->l3 = l3;
    t->l4 = l4;
    return 0;
}

int tso_segment(cursor c, const vnet_hdr *h, uint8_t *out, size_t cap, size_t stride,
                size_t headroom, size_t *lens, int max)
{
    tcp_hdrs t;
    if (!h->gso_size || tcp_headers(c, &t) < 0)
        return -1;
    size_t hdrs = t.l3 + t.l4, payload = c.len - hdrs, mss = h->gso_size;
    size_t segs = payload ? (payload + mss - 1) / mss : 1;
    if (max < 0 || segs > (size_t)max || headroom + hdrs + mss > stride || segs > cap / stride)
        return -1;
    uint32_t seq;
    unsigned id = 0, flags;
    if (!peek_u32(c, t.l3 + 4, &seq) || !peek_u8(c, t.l3 + 13, &flags) ||
        (t.version == 4 && !peek_u16(c, 4, &id)))
        return -1;
    for (size_t k = 0; k < segs; k++) {
        size_t off = k * mss;
        size_t len = payload - off < mss ? payload - off : mss;
        cursor body;
        wcursor o, th;
        if (!cur_sub(c, hdrs + off, len, &body) ||
            !wcur_sub(wcur_make(out, cap), k * stride + headroom, hdrs + len, &o))
            return -1;
        memcpy(o.p, c.p, hdrs);
        memcpy(o.p + hdrs, body.p, len);
        bool ok;
        if (t.version == 4)
            ok = poke_u16(o, 2, (unsigned)(hdrs + len)) &&
                 poke_u16(o, 4, (id + (unsigned)k) & 0xFFFF) && poke_u16(o, 10, 0) &&
                 poke_u16(o, 10, csum_fold(csum_partial(o.p, t.l3, 0)));
        else
            ok = poke_u16(o, 4, (unsigned)(t.l4 + len));
        unsigned f = flags;
        if (k > 0)
            f &= ~0x80u; /* CWR on the first segment only */
        if (k < segs - 1)
            f &= ~0x09u; /* FIN and PSH on the last one only */
        uint64_t pseudo; /* the checksum is computed over the rewritten header (|| orders it) */
        if (!ok || !wcur_rest(o, t.l3, &th) || !poke_u32(th, 4, seq + (uint32_t)off) ||
            !poke_u8(th, 13, f) || !poke_u16(th, 16, 0) ||
            !pseudo_sum(cur_of(o), t.version, th.len, &pseudo) ||
            !poke_u16(th, 16, csum_fold(csum_partial(th.p, th.len, pseudo))))
            return -1;
        lens[k] = hdrs + len;
    }
    return (int)segs;
}

/* A segment the merger accepts: plain TCP (IPv4 without options, IPv6 without extension
 * headers), unfragmented, with data, flags ACK or ACK+PSH.  Returns the header length. */
static size_t mergeable(cursor c, int *version)
{
    size_t n = c.len, l3;
    unsigned b0;
    if (n < 40 || !peek_u8(c, 0, &b0))
        return 0;
    if (b0 == 0x45) {
        const uint8_t *h = cur_peek(c, 0, IPV4_MIN);
        if (!h || h[9] != PROTO_TCP || (h[6] & 0x3F) || h[7] || span_u16(h, 2) != n)
            return 0;
        l3 = IPV4_MIN;
        *version = 4;
    } else if (b0 >> 4 == 6) {
        const uint8_t *h = cur_peek(c, 0, IPV6_LEN);
        if (!h || h[6] != PROTO_TCP || n < 60 || span_u16(h, 4) + IPV6_LEN != n)
            return 0;
        l3 = IPV6_LEN;
        *version = 6;
    } else {
        return 0;
    }
    const uint8_t *th = cur_peek(c, l3, TCP_MIN);
    if (!th)
        return 0;
    size_t l4 = (size_t)(th[12] >> 4) * 4;
    unsigned flags = th[13];
    if (l4 < TCP_MIN || l3 + l4 >= n || (flags & ~0x18u) || !(flags & 0x10))
        return 0;
    /* A merged packet goes to the kernel with its checksum still to compute, which would
     * launder a segment damaged on the way: only segments whose checksum holds merge. */
    cursor tcp;
    uint64_t pseudo;
    if (!cur_rest(c, l3, &tcp) || !pseudo_sum(c, *version, tcp.len, &pseudo) ||
        fold16(csum_partial(tcp.p, tcp.len, pseudo)) != 0xFFFF)
        return 0;
    if (*version == 4 && fold16(csum_partial(c.p, IPV4_MIN, 0)) != 0xFFFF)
        return 0; /* the merged packet's IPv4 header checksum is recomputed */
    return l3 + l4;
}

int tcp_merge_start(tcp_merge *m, cursor c)
{
    int version;
    size_t hdrs = mergeable(c, &version);
    if (!hdrs || c.len + VNET_HDR_LEN > m->cap)
        return 0;
    size_t l3 = version == 4 ? IPV4_MIN : IPV6_LEN;
    uint32_t seq;
    unsigned flags;
    if (!peek_u32(c, l3 + 4, &seq) || !peek_u8(c, l3 + 13, &flags))
        return 0;
    m->version = version;
    m->l3len = (int)l3;
    m->l4len = (int)(hdrs - l3);
    memcpy(m->buf + VNET_HDR_LEN, c.p, c.len);
    m->len = c.len;
    m->segs = 1;
    m->mss = (uint16_t)(c.len - hdrs);
    m->next_seq = seq + (uint32_t)(c.len - hdrs);
    m->closed = (flags & 0x08) != 0;
    return 1;
}

int tcp_merge_add(tcp_merge *m, cursor c)
{
    if (!m->len || m->closed || m->segs >= 64)
        return 0;
    int version;
    size_t hdrs = mergeable(c, &version);
    if (!hdrs || version != m->version || hdrs != (size_t)(m->l3len + m->l4len))
        return 0;
    size_t l3 = (size_t)m->l3len, l4 = (size_t)m->l4len, payload = c.len - hdrs;
    if (payload > m->mss || m->len + payload > 65535 || m->len + payload + VNET_HDR_LEN > m->cap)
        return 0;
    cursor q = cur_make(m->buf + VNET_HDR_LEN, m->len); /* the merged packet so far */
    const uint8_t *ph = cur_peek(c, 0, hdrs), *qh = cur_peek(q, 0, hdrs);
    if (!ph || !qh)
        return 0;
    if (version == 4) {
        /* same TOS, flags (DF and the reserved bit: the offset is 0 in both), TTL, protocol
         * and addresses: the kernel segments the merged packet with the first one's */
        if (ph[1] != qh[1] || ph[6] != qh[6] || ph[8] != qh[8] || memcmp(ph + 12, qh + 12, 8))
            return 0;
    } else if (memcmp(ph, qh, 4) || ph[7] != qh[7] || memcmp(ph + 8, qh + 8, 32)) {
        return 0;
    }
    const uint8_t *th = ph + l3, *qt = qh + l3; /* l4 >= 20 bytes each, inside hdrs */
    if (memcmp(th, qt, 4) || span_u32(th, 4) != m->next_seq || memcmp(th + 8, qt + 8, 5) ||
        memcmp(th + 14, qt + 14, 2) || memcmp(th + 20, qt + 20, l4 - TCP_MIN))
        return 0; /* ports, sequence, ack, data offset, window, options */
    cursor body;
    if (!cur_rest(c, hdrs, &body))
        return 0;
    memcpy(m->buf + VNET_HDR_LEN + m->len, body.p, body.len);
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
    wcursor q = wcur_make(m->buf + VNET_HDR_LEN, m->len);
    if (m->segs > 1) {
        size_t l3 = (size_t)m->l3len, tcp_len = m->len - l3;
        uint64_t pseudo;
        bool ok;
        if (m->version == 4)
            ok = poke_u16(q, 2, (unsigned)m->len) && poke_u16(q, 10, 0) &&
                 poke_u16(q, 10, csum_fold(csum_partial(q.p, l3, 0)));
        else
            ok = poke_u16(q, 4, (unsigned)tcp_len);
        /* CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented */
        ok = ok && pseudo_sum(cur_of(q), m->version, tcp_len, &pseudo) &&
             poke_u16(q, l3 + 16, fold16(pseudo));
        if (ok) { /* always: a merge starts from a packet holding these headers */
            h.flags = VNET_F_NEEDS_CSUM;
            h.gso_type = m->version == 4 ? VNET_GSO_TCPV4 : VNET_GSO_TCPV6;
            h.hdr_len = (uint16_t)(l3 + (size_t)m->l4len);
            h.gso_size = m->mss;
            h.csum_start = (uint16_t)l3;
            h.csum_offset = 16;
        }
    }
    memcpy(m->buf, &h, VNET_HDR_LEN);
    size_t total = m->len + VNET_HDR_LEN;
    m->len = 0;
    m->segs = 0;
    m->closed = 0;
    return total;
}
