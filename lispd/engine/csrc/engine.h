/* The compiled packet loop: TUN -> encapsulate -> UDP, UDP -> decapsulate -> TUN, and
 * UDP -> re-encapsulate -> UDP, against tables the Python control plane installs.  Anything
 * it does not handle completely (misses, negative entries, traces, too-big packets, data-plane
 * control messages, first packets of new ITRs) is punted to the Python reference path.
 *
 * State: everything an engine uses lives in its fp_engine (buffers, the send and receive
 * scratch, the segment lengths), so engines share nothing and a Python callback made in the
 * middle of a batch cannot clobber another engine's batch.  The only file-level data are the
 * CRC-32 table (a compile-time constant, packet.c) and read-only constants.
 *
 * Descriptors: the engine owns its TUN and send sockets: it dup()s what it is given and closes
 * its copies when it is freed, so the caller closing a socket cannot make the engine write to
 * whatever reuses the number.  The 4341 socket of fp_from_udp is borrowed for that call only.
 *
 * Drops: every packet the engine discards without handing it to Python is counted under a
 * named reason (fp_counters, "drops" in Engine.counters()).
 */
#ifndef LISPD_ENGINE_H
#define LISPD_ENGINE_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "cursor.h"
#include "lpm.h"
#include "maptable.h"
#include "packet.h"

#define FP_BATCH 64          /* datagrams per recvmmsg, TUN reads per round */
#define FP_SLOT (65536 + 64) /* one receive buffer */
#define FP_HEADROOM 16       /* in front of each packet: vnet header or LISP header */
#define FP_LISP_HDR LISP_HDR_LEN
#define FP_OUT_MAX 4096      /* encapsulated datagrams queued before a flush */
#define FP_SEG_MAX 256       /* segments of one TUN super-packet */
#define FP_SEG_BUF (FP_SEG_MAX * (FP_HEADROOM + 2048) + 65536) /* segments of one super-packet */
#define FP_SEEN 4096         /* ITR sources remembered between two forget_sources() (as Python) */
#define FP_SEEN_SLOTS 8192
#define FP_POOL_MAX 64       /* send sockets per family */
#define FP_GSO_PEERS_MAX 64 /* [dataplane] gso-rlocs */
#define FP_GROUPS 256        /* destinations told apart per flush; more share one tail group */
#define FP_GROUP_SLOTS 512
#define FP_CMSG_OUT 96       /* TTL, TOS and UDP_SEGMENT: three CMSG_SPACE(4) = 72 bytes */
#define FP_CMSG_IN 128       /* what recvmmsg may return: TTL, TOS, UDP_GRO */
#define FP_MTU_MIN 68        /* the smallest MTU an engine accepts (IPv4's minimum) */

typedef struct {
    uint64_t itr_encap_packets, itr_encap_bytes;
    uint64_t etr_decap_packets, etr_decap_bytes;
    uint64_t rtr_reencap_packets, rtr_reencap_bytes;
    uint64_t all_down_packets, all_down_bytes; /* sent by an all_down record */
    /* drops, each under its own reason */
    uint64_t send_failed, tun_write_failed, tso_unsupported;
    uint64_t tun_read_short;     /* a vnet read shorter than the virtio-net header */
    uint64_t tun_read_truncated; /* a read that filled the buffer: the packet may be cut */
    uint64_t tun_bad_vnet;       /* a virtio-net header the engine did not ask for */
    uint64_t udp_truncated;      /* recvmmsg: MSG_TRUNC */
    uint64_t udp_ctrunc;         /* recvmmsg: MSG_CTRUNC (TTL, TOS, GRO size unknown) */
    uint64_t punt_aborted;       /* read, then left when the Python handler raised */
    /* the fast path's own */
    uint64_t punted_tun, punted_udp;
    uint64_t punted_table_busy; /* the shared table kept changing through a lookup's retries */
    uint64_t tun_superpackets, gso_sends, gro_datagrams, merged_writes;
    uint64_t last_send_errno; /* of the latest failed send, for the operator */
    uint64_t busy_polls;        /* fp_busy_poll calls: spins after a batch */
    uint64_t busy_poll_packets; /* packets a spin read: each a wake-up saved */
} fp_counters;

/* One encapsulated datagram waiting for the next flush. */
typedef struct {
    uint8_t *data;
    uint32_t len;
    uint32_t inner_len; /* what the role counter counts */
    int fd;             /* the engine's descriptor */
    int given;          /* the caller's number for it (names it to a capture) */
    uint16_t port;
    uint8_t family, ttl, tos, role; /* role: 0 ITR, 1 RTR */
    uint8_t addr[16];
} fp_out;

typedef struct {
    int fd, given;
    uint8_t family;
    uint8_t all_down; /* chosen from a record whose RLOCs are all down (counted when queued) */
    int ttl, tos;
    uint16_t port;
    uint8_t addr[16];
} fp_dest;

typedef struct {
    uint8_t family;
    uint8_t addr[16];
} fp_seen;

/* A send socket: the engine's own descriptor, and the number the caller gave (what the
 * decision functions and captures report, so that callers recognise their sockets). */
typedef struct {
    int fd;
    int given;
} fp_socket;

/* The scratch of one flush: grouping by destination, and sendmmsg's arrays. */
typedef struct {
    struct mmsghdr msgs[FP_OUT_MAX];
    struct iovec iov[FP_OUT_MAX];
    struct sockaddr_in6 names[FP_OUT_MAX];
    int first[FP_OUT_MAX + 1], count[FP_OUT_MAX];
    int gid[FP_OUT_MAX];
    int slot_group[FP_GROUP_SLOTS]; /* group + 1, 0 free */
    int rep[FP_GROUPS];             /* a datagram of each group */
    int order[FP_GROUPS + 1], start[FP_GROUPS + 1], size[FP_GROUPS + 1];
    fp_out grouped[FP_OUT_MAX];
    _Alignas(struct cmsghdr) uint8_t cbuf[FP_OUT_MAX][FP_CMSG_OUT];
} fp_tx;

/* The scratch of one recvmmsg. */
typedef struct {
    struct mmsghdr msgs[FP_BATCH];
    struct iovec iov[FP_BATCH];
    struct sockaddr_storage names[FP_BATCH];
    _Alignas(struct cmsghdr) uint8_t cbuf[FP_BATCH][FP_CMSG_IN];
} fp_rx;

/* Where sends and TUN writes go: the sockets and the device (hooks NULL), or a capture
 * (Engine.fuzz_tun / fuzz_udp): the same code runs up to the system call. */
typedef struct {
    int (*send)(void *ctx, int given_fd, const struct msghdr *m); /* 0, or -1 with errno */
    ssize_t (*tun_write)(void *ctx, const struct iovec *v, int n); /* bytes, or -1 with errno */
    void *ctx;
} fp_sink;

typedef struct {
    int tun_fd; /* owned (a dup), -1: none */
    int vnet; /* TUN with virtio-net headers: TSO super-packets read, TCP merged on write */
    int gso;  /* UDP GSO: a run of datagrams to one destination leaves in one sendmsg
               * (one unsegmented skb up to the device: only for next hops that take it);
               * without it the run is separate datagrams of one sendmmsg */
    int gro;
    /* RLOCs that take UDP GSO bursts even without ``gso`` (peers known to read 4341 from a UDP
     * socket, as lispd does): family 4 or 6 and the address (IPv4 in the first 4 bytes) */
    int ngso_peers;
    uint8_t gso_peer_family[FP_GSO_PEERS_MAX];
    uint8_t gso_peer[FP_GSO_PEERS_MAX][16];
    int itr, etr, rtr, punt_all;
    int mtu;
    fp_socket pool[2][FP_POOL_MAX]; /* owned */
    int pool_n[2];
    fp_socket data[2]; /* owned; fd -1: none */
    fp_map map;        /* the map-cache records: private, or the shared table (maptable.h) */
    fp_record_copy record; /* a reader's copy of the record it found */
    lpm_table db;
    uint8_t *tun_bufs, *udp_bufs, *seg_buf;
    fp_out *out;
    int nout;
    fp_tx *tx;
    fp_rx *rx;
    size_t seg_lens[FP_SEG_MAX];
    tcp_merge merge;
    uint64_t merge_bytes;
    fp_seen seen[FP_SEEN_SLOTS];
    int nseen;
    uint64_t nonce_state;
    fp_sink sink;
    int busy; /* inside a read loop or a fuzz call: the buffers are in use */
    uint32_t busy_poll_us; /* [dataplane] busy-poll: 0 = sleep right after a batch */
    uint64_t received;     /* TUN reads and 4341 messages so far (fp_busy_poll's progress) */
    fp_counters c;
} fp_engine;

int fp_engine_init(fp_engine *e);
void fp_engine_free(fp_engine *e); /* frees the buffers and tables, closes the descriptors */
/* The TUN, every send socket and the shared table's descriptor: none from now on (the table
 * itself stays, mapped). */
void fp_close_descriptors(fp_engine *e);

/* Descriptors: each dup()s fd (F_DUPFD_CLOEXEC) and closes the engine's previous copy; fd < 0
 * means none.  0, or -1 with errno set (nothing changed). */
int fp_set_tun(fp_engine *e, int fd);
int fp_set_pool(fp_engine *e, int family, const int *fds, int n);
int fp_set_data_socket(fp_engine *e, int family, int fd);

/* Decisions (no I/O). */
enum { FP_PUNT = 0, FP_ENCAP = 1 };
/* ITR: where inner packet c goes.  iid < 0: find it from the source (a local EID); reencap:
 * an RTR's packet (no MTU check, the outer packet may fragment).  check_len: the length
 * compared with the MTU (a segment's for a super-packet). */
int fp_classify(fp_engine *e, cursor c, long iid, int reencap, size_t check_len, fp_dest *d,
                uint32_t *iid_out);
/* The 8-byte LISP header at the start of at; -1 when at is shorter. */
int fp_write_header(fp_engine *e, wcursor at, uint32_t iid);

/* I/O.  Each returns 0, -1 with errno set for a failure of the device or socket itself, or -2
 * when a punt handler failed (a Python exception is set).  punt(ctx, ...) receives what the
 * Python path must handle. */
typedef int (*fp_punt_tun)(void *ctx, const uint8_t *p, size_t n);
typedef int (*fp_punt_udp)(void *ctx, const uint8_t *p, size_t n, int ttl, int tos,
                           const struct sockaddr_storage *src);
int fp_from_tun(fp_engine *e, int budget, fp_punt_tun punt, void *ctx);
int fp_from_udp(fp_engine *e, int fd, int budget, fp_punt_udp punt, void *ctx);
void fp_flush(fp_engine *e);
/* Adaptive busy-polling, called after a batch: keeps reading the engine's TUN and the nfds
 * 4341 sockets fds without sleeping until e->busy_poll_us pass with nothing read, or
 * FP_BUSY_POLL_CAP_US in all.  A packet that arrives meanwhile is handled without a wake-up
 * (the sleep/wake-up of a process, an idle virtual CPU's above all, costs tens of
 * microseconds).  Returns as fp_from_tun; 0 at once when busy_poll_us is 0. */
#define FP_BUSY_POLL_MAX_US 1000 /* the largest [dataplane] busy-poll */
#define FP_BUSY_POLL_CAP_US 2000 /* one call's longest spin, whatever arrives */
int fp_busy_poll(fp_engine *e, const int *fds, int nfds, fp_punt_tun punt_tun, void *tun_ctx,
                 fp_punt_udp punt_udp, void *udp_ctx);
/* What fp_from_tun does with one read of r bytes into slot k of e->tun_bufs: the read goes
 * to fp_tun_slot(e, k), fp_tun_read_room(e) bytes of room. */
size_t fp_tun_read_offset(const fp_engine *e);
size_t fp_tun_read_room(const fp_engine *e);
uint8_t *fp_tun_slot(fp_engine *e, int k);
int fp_tun_packet(fp_engine *e, int k, size_t r, fp_punt_tun punt, void *ctx);
/* What fp_from_udp does with one received message of len bytes in slot k of e->udp_bufs (read
 * to fp_udp_slot(e, k), FP_SLOT - FP_HEADROOM bytes of room): flags as recvmsg's msg_flags,
 * seg the UDP_GRO segment size (0: none), src its source.  The caller flushes
 * (fp_end_batch). */
uint8_t *fp_udp_slot(fp_engine *e, int k);
int fp_udp_message(fp_engine *e, int k, size_t len, int flags, int ttl, int tos, int seg,
                   const struct sockaddr_storage *src, fp_punt_udp punt, void *ctx);
void fp_end_batch(fp_engine *e); /* write the pending merge, send the queue */

/* The ETR/RTR decision on one datagram in buffer d (modified in place).  source_known: NULL
 * (tests: no new-ITR punts), or the caller's flag, 0 for the first datagram of a message,
 * so that the set of recent ITRs is consulted once per received message. */
enum { FP_TO_TUN = 2, FP_REENCAP = 3 };
int fp_datagram_decision(fp_engine *e, wcursor d, int ttl, int tos, fp_dest *dest,
                         int *source_known, const struct sockaddr_storage *src);

#endif
