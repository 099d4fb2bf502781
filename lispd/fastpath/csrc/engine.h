/* The compiled packet loop: TUN -> encapsulate -> UDP, UDP -> decapsulate -> TUN, and
 * UDP -> re-encapsulate -> UDP, against tables the Python control plane installs.  Anything
 * it does not handle completely (misses, negative entries, traces, too-big packets, data-plane
 * control messages, first packets of new ITRs) is punted to the Python reference path.
 */
#ifndef LISPD_ENGINE_H
#define LISPD_ENGINE_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lpm.h"
#include "packet.h"

#define FP_BATCH 64          /* datagrams per recvmmsg, TUN reads per round */
#define FP_SLOT (65536 + 64) /* one receive buffer */
#define FP_HEADROOM 16       /* in front of each packet: vnet header or LISP header */
#define FP_LISP_HDR 8
#define FP_OUT_MAX 4096      /* encapsulated datagrams queued before a flush */
#define FP_SEG_MAX 256       /* segments of one TUN super-packet */
#define FP_SEG_BUF (FP_SEG_MAX * (FP_HEADROOM + 2048) + 65536) /* segments of one super-packet */
#define FP_SEEN 4096         /* ITR sources remembered between two forget_sources() (as Python) */
#define FP_SEEN_SLOTS 8192

typedef struct {
    uint8_t addr[16];
    uint16_t port;
    uint8_t family;
    uint8_t via_data; /* send from the 4341 socket (a NAT-translated destination) */
    uint32_t weight;
} fp_rloc;

typedef struct {
    uint32_t total_weight;
    uint16_t n; /* 0: punt every packet matching this prefix to Python */
    fp_rloc rloc[];
} fp_record;

typedef struct {
    uint64_t itr_encap_packets, itr_encap_bytes;
    uint64_t etr_decap_packets, etr_decap_bytes;
    uint64_t rtr_reencap_packets, rtr_reencap_bytes;
    uint64_t send_failed, tun_write_failed, tso_unsupported;
    uint64_t punted_tun, punted_udp;
    uint64_t tun_superpackets, gso_sends, gro_datagrams, merged_writes;
    uint64_t last_send_errno; /* of the latest failed send, for the operator */
} fp_counters;

/* One encapsulated datagram waiting for the next flush. */
typedef struct {
    uint8_t *data;
    uint32_t len;
    uint32_t inner_len; /* what the role counter counts */
    int fd;
    uint16_t port;
    uint8_t family, ttl, tos, role; /* role: 0 ITR, 1 RTR */
    uint8_t addr[16];
} fp_out;

typedef struct {
    int fd;
    uint8_t family;
    int ttl, tos;
    uint16_t port;
    uint8_t addr[16];
} fp_dest;

typedef struct {
    uint8_t family;
    uint8_t addr[16];
} fp_seen;

typedef struct {
    int tun_fd, vnet, gso, gro;
    int itr, etr, rtr, punt_all;
    int mtu;
    int pool[2][64];
    int pool_n[2];
    int data_fd[2];
    lpm_table map, db;
    uint8_t *tun_bufs, *udp_bufs, *seg_buf;
    fp_out *out;
    int nout;
    tcp_merge merge;
    uint64_t merge_bytes;
    fp_seen seen[FP_SEEN_SLOTS];
    int nseen;
    uint64_t nonce_state;
    fp_counters c;
} fp_engine;

int fp_engine_init(fp_engine *e);
void fp_engine_free(fp_engine *e);

/* Decisions (no I/O). */
enum { FP_PUNT = 0, FP_ENCAP = 1 };
/* ITR: where inner packet p (n bytes) goes.  iid < 0: find it from the source (a local EID);
 * reencap: an RTR's packet (no MTU check, the outer packet may fragment).  check_len: the
 * length compared with the MTU (a segment's for a super-packet). */
int fp_classify(fp_engine *e, const uint8_t *p, size_t n, long iid, int reencap,
                size_t check_len, fp_dest *d, uint32_t *iid_out);
void fp_write_header(fp_engine *e, uint8_t *at, uint32_t iid);

/* I/O.  Each returns 0, or -1 with errno set for a failure of the device or socket itself.
 * punt(ctx, ...) receives what the Python path must handle. */
typedef int (*fp_punt_tun)(void *ctx, const uint8_t *p, size_t n);
typedef int (*fp_punt_udp)(void *ctx, const uint8_t *p, size_t n, int ttl, int tos,
                           const struct sockaddr_storage *src);
int fp_from_tun(fp_engine *e, int budget, fp_punt_tun punt, void *ctx);
int fp_from_udp(fp_engine *e, int fd, int budget, fp_punt_udp punt, void *ctx);
void fp_flush(fp_engine *e);

/* The ETR/RTR decision on one datagram in buffer d (modified in place).  source_known: NULL
 * (tests: no new-ITR punts), or the caller's flag, 0 for the first datagram of a message,
 * so that the set of recent ITRs is consulted once per received message. */
enum { FP_TO_TUN = 2, FP_REENCAP = 3 };
int fp_datagram_decision(fp_engine *e, uint8_t *d, size_t n, int ttl, int tos, fp_dest *dest,
                         int *source_known, const struct sockaddr_storage *src);

#endif
