/* Per-packet work on inner (EID) IP packets: the same rules as the pure-Python reference in
 * lispd/fastpath/inner.py and lispd/dataplane/trace.py, plus what offloads need (checksums,
 * TCP segmentation of TUN super-packets, and merging TCP segments back into one).
 */
#ifndef LISPD_PACKET_H
#define LISPD_PACKET_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_SCTP 132

/* struct virtio_net_hdr, as the TUN device reads and writes it with IFF_VNET_HDR */
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

typedef struct {
    int version;
    const uint8_t *src, *dst; /* 4 or 16 bytes */
    int alen;
    int protocol;
    int l3len;       /* IPv4 IHL in bytes, 40 for IPv6 */
    int has_ports;   /* unfragmented TCP/UDP/SCTP with 4 bytes of ports */
    const uint8_t *ports;
    int ttl;
    int tos;
    int dont_fragment;
} inner_flow;

/* zlib-compatible CRC-32 continuing from crc (as Python's zlib.crc32(data, crc)). */
uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n);
/* Flow fields of an IPv4/IPv6 packet; -1 when malformed (as inner.parse_inner). */
int parse_inner(const uint8_t *p, size_t n, inner_flow *f);
/* The 32-bit flow hash of inner.flow_hash. */
uint32_t flow_hash(const inner_flow *f);
/* inner.inner_destination: the destination when the length fields agree, else NULL. */
const uint8_t *inner_destination(const uint8_t *p, size_t n, int *alen);
/* trace.is_trace: UDP to or from port 2434, unfragmented. */
int is_trace(const uint8_t *p, size_t n);
/* inner.fix_inner_on_decap in place; -1 means drop (CE on a not-ECN-capable packet). */
int fix_on_decap(uint8_t *p, size_t n, int outer_ttl, int outer_tos);
/* inner.decrement_ttl in place; -1 when the TTL/hop limit would reach zero. */
int decrement_ttl(uint8_t *p, size_t n);

/* Ones' complement sum helpers (RFC 1071). */
uint64_t csum_partial(const uint8_t *p, size_t n, uint64_t sum);
uint16_t csum_fold(uint64_t sum);
/* Complete a checksum the kernel left partial (VIRTIO_NET_HDR_F_NEEDS_CSUM); -1: bad offsets. */
int csum_complete(uint8_t *p, size_t n, const vnet_hdr *h);

/* Split a TCP super-packet (TSO, gso_size > 0) into segments: segment k is written at
 * out + k * stride + headroom, its length in lens[k].  Returns the number of segments, or -1
 * when the packet is not a TCP super-packet this code can split (or needs more than max). */
int tso_segment(const uint8_t *p, size_t n, const vnet_hdr *h, uint8_t *out, size_t stride,
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

/* Append p to m when it continues m's flow; 1 when taken, 0 when m must be flushed first
 * (or p cannot be merged at all: then tcp_merge_start refuses it too). */
int tcp_merge_add(tcp_merge *m, const uint8_t *p, size_t n);
/* Start m with p when p is a mergeable TCP segment; 1 when started. */
int tcp_merge_start(tcp_merge *m, const uint8_t *p, size_t n);
/* Finish m's headers; returns the bytes to write (vnet header included) at m->buf. */
size_t tcp_merge_finish(tcp_merge *m);

#endif
