/* Per-packet work on inner (EID) IP packets: the same rules as the pure-Python reference in
 * lispd/dataplane/inner.py and lispd/dataplane/tracing.py, plus what offloads need (checksums,
 * TCP segmentation of TUN super-packets, and merging TCP segments back into one).
 *
 * Every parser here reads through a cursor (cursor.h): it gets the bytes actually received
 * and cannot read past them, whatever the packet's own length fields say.  Functions that
 * rewrite a packet in place take a wcursor and check every write the same way.
 */
#ifndef LISPD_PACKET_H
#define LISPD_PACKET_H

#include <stddef.h>
#include <stdint.h>

#include "cursor.h"

#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_SCTP 132

/* struct virtio_net_hdr, as the TUN device reads and writes it with IFF_VNET_HDR (fields in
 * host order: lispd never sets TUNSETVNETLE/BE) */
typedef struct {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
} vnet_hdr;
#define VNET_HDR_LEN 10
#define VNET_F_NEEDS_CSUM 1
#define VNET_GSO_NONE 0
#define VNET_GSO_TCPV4 1
#define VNET_GSO_TCPV6 4
#define VNET_GSO_ECN 0x80

/* The LISP data header (RFC 9300 5.3): what the ETR and RTR need of it. */
#define LISP_HDR_LEN 8
typedef struct {
    uint8_t flags;    /* N L E V I and the two key-id bits (0x03) */
    uint32_t iid;     /* the I bit's instance-ID, 0 without it (as wire/data.py's read_data_header) */
} lisp_hdr;

typedef struct {
    int version;
    const uint8_t *src, *dst; /* 4 or 16 bytes, inside the parsed packet */
    int alen;
    int protocol;
    int l3len;       /* IPv4 IHL in bytes, 40 for IPv6 */
    int has_ports;   /* unfragmented TCP/UDP/SCTP with 4 bytes of ports */
    const uint8_t *ports;
    int ttl;
    int tos;
    int dont_fragment;
} inner_flow;

/* What a parser or an in-place rewrite says when it refuses a packet. */
enum {
    PKT_OK = 0,
    PKT_DROP = -1,      /* the rules say drop (CE on a not-ECT packet, a TTL reaching zero) */
    PKT_MALFORMED = -2, /* the bytes are not what the caller checked they were */
};

/* zlib-compatible CRC-32 continuing from crc (as Python's zlib.crc32(data, crc)). */
uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n);
/* Flow fields of an IPv4/IPv6 packet; -1 when malformed (as inner.parse_inner). */
int parse_inner(cursor c, inner_flow *f);
/* The 32-bit flow hash of inner.flow_hash. */
uint32_t flow_hash(const inner_flow *f);
/* inner.inner_destination: the destination when the length fields agree, else NULL. */
const uint8_t *inner_destination(cursor c, int *alen);
/* tracing.is_trace: UDP to or from port 2434, unfragmented. */
int is_trace(cursor c);
/* The LISP data header at the start of c; -1 when c is shorter than one. */
int parse_lisp_header(cursor c, lisp_hdr *h);
/* inner.fix_inner_on_decap in place: PKT_OK, PKT_DROP (CE on a not-ECN-capable packet) or
 * PKT_MALFORMED (not an IPv4/IPv6 header of w's length; nothing written). */
int fix_on_decap(wcursor w, int outer_ttl, int outer_tos);
/* inner.decrement_ttl in place: PKT_OK, PKT_DROP (the TTL/hop limit would reach zero) or
 * PKT_MALFORMED. */
int decrement_ttl(wcursor w);

/* Ones' complement sum helpers (RFC 1071): sums exactly n bytes at p. */
uint64_t csum_partial(const uint8_t *p, size_t n, uint64_t sum);
uint16_t csum_fold(uint64_t sum);

/* The virtio-net header at the start of c; -1 when c is shorter than one. */
int parse_vnet(cursor c, vnet_hdr *h);
/* Whether the engine takes a packet with header h: a GSO type it asked the kernel for
 * (TCPv4/TCPv6, ECN or not) with a segment size, or none.  0: yes, -1: refuse it. */
int vnet_check(const vnet_hdr *h);
/* Complete a checksum the kernel left partial (VIRTIO_NET_HDR_F_NEEDS_CSUM); -1: offsets
 * outside the packet (nothing written). */
int csum_complete(wcursor w, const vnet_hdr *h);

/* The headers of a TCP packet: IPv4 (any IHL) or IPv6 without extension headers, with a
 * data offset of at least 5 words that fits in the packet. */
typedef struct {
    int version;
    size_t l3; /* IP header bytes */
    size_t l4; /* TCP header bytes */
} tcp_hdrs;
int tcp_headers(cursor c, tcp_hdrs *t);

/* Split a TCP super-packet (TSO, gso_size > 0) into segments: segment k is written at
 * out + k * stride + headroom, its length in lens[k]; out holds cap bytes.  Returns the number
 * of segments, or -1 when the packet is not a TCP super-packet this code can split (or needs
 * more than max segments, or more room than out has). */
int tso_segment(cursor c, const vnet_hdr *h, uint8_t *out, size_t cap, size_t stride,
                size_t headroom, size_t *lens, int max);

/* Merging TCP segments of one flow into a super-packet written to a TUN with a vnet header. */
typedef struct {
    uint8_t *buf;    /* [vnet header][IP][TCP][payload...]; capacity cap bytes */
    size_t cap;
    size_t len;      /* bytes after the vnet header; 0 when empty */
    int segs;
    int version, l3len, l4len;
    uint16_t mss;
    uint32_t next_seq;
    int closed;      /* a short or PSH segment ended it */
} tcp_merge;

/* Append c to m when it continues m's flow; 1 when taken, 0 when m must be flushed first
 * (or c cannot be merged at all: then tcp_merge_start refuses it too). */
int tcp_merge_add(tcp_merge *m, cursor c);
/* Start m with c when c is a mergeable TCP segment; 1 when started. */
int tcp_merge_start(tcp_merge *m, cursor c);
/* Finish m's headers; returns the bytes to write (vnet header included) at m->buf. */
size_t tcp_merge_finish(tcp_merge *m);

#endif
