/*
 * udpgen: the traffic generator of the benchmark harness (python -m benchmarks).
 *
 * iperf3 cannot offer more than ~150 kpps of small UDP on a small VM (one sendto per
 * datagram), so packet rates are measured with this batching generator instead:
 *
 *   udpgen send DST PORT SIZE SECONDS [RATE_PPS] [FLOWS] [SPORT_BASE]
 *       sendmmsg() bursts of 64 SIZE-byte UDP payloads to DST:PORT for SECONDS; RATE_PPS 0
 *       (the default) sends as fast as possible, otherwise paced (bursts of ~100 us of
 *       traffic).  FLOWS (default 1, at most 1024) flows: source ports SPORT_BASE (default
 *       20000) to SPORT_BASE + FLOWS - 1, taking turns datagram by datagram (within every
 *       batch), so receive-side flow hashing (multi-queue TUN, SO_REUSEPORT, RSS) sees them
 *       all at once.  Written through a raw socket (IPPROTO_RAW: our own IPv4 and UDP
 *       headers, UDP checksum 0), needs CAP_NET_RAW.  Prints one JSON line:
 *       {"sent": N, "errors": E, "seconds": S}.
 *   udpgen recv PORT SECONDS [IDLE]
 *       binds UDP PORT (any address), prints "listening", counts datagrams with recvmmsg()
 *       until SECONDS have passed, IDLE seconds (default 0.5) went by without a datagram
 *       after the first one, or SIGTERM/SIGINT.  Prints {"received": N, "bytes": B,
 *       "seconds": S} (S: first to last datagram).
 *   udpgen ping DST COUNT INTERVAL_MS [WAIT_MS]
 *       ICMP echo (raw socket, IPv4): one request every INTERVAL_MS, prints
 *       "reply from A seq=N time=T ms" per reply (T with microsecond resolution, taken with
 *       CLOCK_MONOTONIC around the send and the receive) and "sent=N received=M".
 *   udpgen handoff COUNT INTERVAL_MS
 *       the machine's floor for a hand-off between processes: a child echoes what it
 *       receives on a datagram socket pair, both sides blocked in recv() between messages;
 *       one round trip (two wake-ups, no network) every INTERVAL_MS, printed as ping does.
 *
 * Compiled at run time by benchmarks/traffic.py (gcc -O2), cached by the hash of this file.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define RBATCH 256
#define MAX_FLOWS 1024
#define HEADERS 28 /* IPv4 + UDP */
#define MAX_SIZE (65535 - HEADERS)
#define SPORT_BASE 20000

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_until(double when) {
    double left = when - now();
    if (left <= 0)
        return;
    if (left > 50e-6) { /* sleep most of it, spin the rest: nanosleep oversleeps */
        struct timespec ts;
        double nap = left - 20e-6;
        ts.tv_sec = (time_t)nap;
        ts.tv_nsec = (long)((nap - ts.tv_sec) * 1e9);
        nanosleep(&ts, NULL);
    }
    while (now() < when)
        ;
}

static int parse_addr(const char *text, struct sockaddr_in *sa, int port) {
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, text, &sa->sin_addr) == 1 ? 0 : -1;
}

static int cmd_send(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr,
                "usage: udpgen send DST PORT SIZE SECONDS [RATE_PPS] [FLOWS] [SPORT_BASE]\n");
        return 2;
    }
    struct sockaddr_in dst;
    int port = atoi(argv[1]);
    if (parse_addr(argv[0], &dst, 0) < 0) {
        fprintf(stderr, "udpgen: bad address %s\n", argv[0]);
        return 2;
    }
    int size = atoi(argv[2]);
    double seconds = atof(argv[3]);
    double rate = argc > 4 ? atof(argv[4]) : 0.0;
    int flows = argc > 5 ? atoi(argv[5]) : 1;
    int base = argc > 6 ? atoi(argv[6]) : SPORT_BASE;
    int run = argc > 7 ? atoi(argv[7]) : 1;
    if (size < 1 || size > MAX_SIZE || seconds <= 0 || rate < 0 || flows < 1 ||
        flows > MAX_FLOWS || run < 1 || port < 1 || port > 65535 || base < 1 || base + flows - 1 > 65535) {
        fprintf(stderr, "udpgen: bad arguments\n");
        return 2;
    }
    /* A raw socket writing its own IPv4 and UDP headers: every datagram of a sendmmsg batch
     * can come from another source port (a UDP socket has one).  The kernel fills in the
     * source address (0 here), the IP ID, total length and header checksum; the UDP checksum
     * is 0 (none, valid over IPv4). */
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    int sndbuf = 4 << 20;
    if (fd < 0 || connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
        perror("udpgen: raw socket/connect");
        return 2;
    }
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf);
    size_t len = HEADERS + (size_t)size;
    char *bufs = calloc(BATCH, len);
    if (bufs == NULL)
        return 2;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        char *b = bufs + (size_t)i * len;
        struct iphdr *ip = (struct iphdr *)b;
        struct udphdr *udp = (struct udphdr *)(b + sizeof *ip);
        ip->version = 4;
        ip->ihl = 5;
        ip->ttl = 64;
        ip->protocol = IPPROTO_UDP;
        ip->frag_off = htons(0x4000); /* DF, as a UDP socket sends by default */
        ip->daddr = dst.sin_addr.s_addr;
        udp->dest = htons((uint16_t)port);
        udp->len = htons((uint16_t)(sizeof *udp + (size_t)size));
        iov[i].iov_base = b;
        iov[i].iov_len = len;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    /* paced: bursts of ~100 us of traffic, so the offered load is smooth */
    int burst = BATCH;
    if (rate > 0) {
        burst = (int)(rate * 100e-6);
        if (burst < 1)
            burst = 1;
        if (burst > BATCH)
            burst = BATCH;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    uint64_t sent = 0, errors = 0, seq = 0;
    double start = now(), end = start + seconds, t = start;
    while (!stop_flag && (t = now()) < end) {
        int n = burst;
        if (rate > 0) {
            double due = start + (double)sent / rate;
            if (due > t) {
                sleep_until(due < end ? due : end);
                continue;
            }
        }
        /* datagram number s goes out from source port base + s % flows: the flows take
         * turns within every batch */
        for (int i = 0; i < n; i++) {
            char *b = bufs + (size_t)i * len;
            uint64_t s = seq + (uint64_t)i;
            ((struct udphdr *)(b + sizeof(struct iphdr)))->source =
                htons((uint16_t)(base + (int)(s / (uint64_t)run % (uint64_t)flows)));
            if (size >= 8)
                memcpy(b + HEADERS, &s, sizeof s);
        }
        int r = sendmmsg(fd, msgs, (unsigned)n, 0);
        if (r < 0) {
            if (errno != EINTR)
                errors++;
            if (errno == ENOBUFS || errno == EAGAIN)
                sched_yield();
            continue;
        }
        sent += (uint64_t)r;
        seq += (uint64_t)r;
    }
    double took = now() - start;
    printf("{\"sent\": %llu, \"errors\": %llu, \"seconds\": %.6f}\n", (unsigned long long)sent,
           (unsigned long long)errors, took);
    return 0;
}

static int cmd_recv(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: udpgen recv PORT SECONDS [IDLE]\n");
        return 2;
    }
    struct sockaddr_in any;
    memset(&any, 0, sizeof any);
    any.sin_family = AF_INET;
    any.sin_port = htons((uint16_t)atoi(argv[0]));
    double seconds = atof(argv[1]);
    double idle = argc > 2 ? atof(argv[2]) : 0.5;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int rcvbuf = 16 << 20;
    if (fd < 0 || bind(fd, (struct sockaddr *)&any, sizeof any) < 0) {
        perror("udpgen: socket/bind");
        return 2;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
    struct timeval tv = {0, 50000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: recvmmsg returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    static char bufs[RBATCH][2048];
    struct mmsghdr msgs[RBATCH];
    struct iovec iov[RBATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < RBATCH; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = sizeof bufs[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    printf("listening\n");
    fflush(stdout);
    uint64_t received = 0, bytes = 0;
    double start = now(), first = 0, last = 0;
    while (!stop_flag) {
        double t = now();
        if (t - start > seconds || (received && t - last > idle))
            break;
        int r = recvmmsg(fd, msgs, RBATCH, MSG_WAITFORONE, NULL);
        if (r <= 0)
            continue;
        t = now();
        if (!received)
            first = t;
        last = t;
        received += (uint64_t)r;
        for (int i = 0; i < r; i++)
            bytes += msgs[i].msg_len;
    }
    printf("{\"received\": %llu, \"bytes\": %llu, \"seconds\": %.6f}\n",
           (unsigned long long)received, (unsigned long long)bytes, received ? last - first : 0.0);
    return 0;
}

static uint16_t checksum(const void *data, size_t len) {
    const uint8_t *p = data;
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (len & 1)
        sum += (uint32_t)(p[len - 1] << 8);
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return htons((uint16_t)~sum);
}

static int cmd_ping(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: udpgen ping DST COUNT INTERVAL_MS [WAIT_MS]\n");
        return 2;
    }
    struct sockaddr_in dst;
    if (parse_addr(argv[0], &dst, 0) < 0) {
        fprintf(stderr, "udpgen: bad address %s\n", argv[0]);
        return 2;
    }
    int count = atoi(argv[1]);
    double interval = atof(argv[2]) / 1e3;
    double wait = argc > 3 ? atof(argv[3]) / 1e3 : 1.0;
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    if (fd < 0) {
        perror("udpgen: raw socket");
        return 2;
    }
    uint16_t ident = (uint16_t)(getpid() & 0xFFFF);
    int received = 0;
    char out[64], in[2048];
    for (int seq = 1; seq <= count; seq++) {
        struct icmphdr *h = (struct icmphdr *)out;
        memset(out, 0, sizeof out);
        h->type = ICMP_ECHO;
        h->un.echo.id = htons(ident);
        h->un.echo.sequence = htons((uint16_t)seq);
        for (size_t i = sizeof *h; i < sizeof out; i++)
            out[i] = (char)i;
        h->checksum = checksum(out, sizeof out);
        double t0 = now();
        if (sendto(fd, out, sizeof out, 0, (struct sockaddr *)&dst, sizeof dst) < 0) {
            printf("seq=%d send error: %s\n", seq, strerror(errno));
            continue;
        }
        double deadline = t0 + (seq < count ? interval : wait);
        int answered = 0;
        for (;;) {
            double left = deadline - now();
            if (left <= 0)
                break;
            if (answered) { /* wait out the interval */
                sleep_until(deadline);
                break;
            }
            struct pollfd pfd = {fd, POLLIN, 0};
            if (poll(&pfd, 1, (int)(left * 1e3) + 1) <= 0)
                continue;
            ssize_t n = recv(fd, in, sizeof in, 0);
            double t1 = now();
            if (n < (ssize_t)sizeof(struct iphdr))
                continue;
            struct iphdr *ip = (struct iphdr *)in;
            size_t hl = (size_t)ip->ihl * 4;
            if ((size_t)n < hl + sizeof(struct icmphdr))
                continue;
            struct icmphdr *r = (struct icmphdr *)(in + hl);
            if (r->type != ICMP_ECHOREPLY || ntohs(r->un.echo.id) != ident ||
                ntohs(r->un.echo.sequence) != seq)
                continue;
            char addr[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &ip->saddr, addr, sizeof addr);
            printf("reply from %s seq=%d time=%.3f ms\n", addr, seq, (t1 - t0) * 1e3);
            received++;
            answered = 1;
            if (seq == count)
                break;
        }
    }
    printf("sent=%d received=%d\n", count, received);
    return received ? 0 : 1;
}

static int cmd_handoff(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: udpgen handoff COUNT INTERVAL_MS\n");
        return 2;
    }
    int count = atoi(argv[0]);
    double interval = atof(argv[1]) / 1e3;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0) {
        perror("udpgen: socketpair");
        return 2;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("udpgen: fork");
        return 2;
    }
    if (child == 0) { /* the echo: back what comes, until an empty message */
        char buf[64];
        close(sv[0]);
        for (;;) {
            ssize_t n = recv(sv[1], buf, sizeof buf, 0);
            if (n <= 0 || send(sv[1], buf, (size_t)n, 0) < 0)
                _exit(0);
        }
    }
    close(sv[1]);
    int received = 0;
    char msg[8] = "handoff", in[64];
    for (int seq = 1; seq <= count; seq++) {
        double t0 = now();
        if (send(sv[0], msg, sizeof msg, 0) < 0 || recv(sv[0], in, sizeof in, 0) <= 0)
            break;
        double t1 = now();
        printf("reply from handoff seq=%d time=%.3f ms\n", seq, (t1 - t0) * 1e3);
        received++;
        sleep_until(t0 + interval);
    }
    send(sv[0], msg, 0, 0);
    close(sv[0]);
    waitpid(child, NULL, 0);
    printf("sent=%d received=%d\n", count, received);
    return received ? 0 : 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "send") == 0)
        return cmd_send(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "recv") == 0)
        return cmd_recv(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "ping") == 0)
        return cmd_ping(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "handoff") == 0)
        return cmd_handoff(argc - 2, argv + 2);
    fprintf(stderr, "usage: udpgen send|recv|ping|handoff ...\n");
    return 2;
}
