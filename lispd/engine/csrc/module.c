/* lispd.engine._accel: the Python face of the compiled fast path (see engine.h). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"

typedef struct {
    PyObject_HEAD fp_engine e;
    int ready;
} Engine;

static int address_arg(Py_buffer *b, int *family)
{
    if (b->len == 4)
        *family = 4;
    else if (b->len == 16)
        *family = 6;
    else {
        PyErr_SetString(PyExc_ValueError, "an address is 4 or 16 packed bytes");
        return -1;
    }
    return 0;
}

/* An instance-ID argument ("O&"): an int in 0..0xFFFFFF.  Not the "k" format, which masks
 * (2**64 + 5 would be instance 5): negative and too large ints are refused. */
static int iid_converter(PyObject *o, void *out)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "an instance-ID is an int, not %.80s", Py_TYPE(o)->tp_name);
        return 0;
    }
    unsigned long v = PyLong_AsUnsignedLong(o);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return 0;
    if (v > 0xFFFFFF) {
        PyErr_SetString(PyExc_ValueError, "instance-ID out of range (24 bits)");
        return 0;
    }
    *(unsigned long *)out = v;
    return 1;
}

static int prefix_args(Py_buffer *b, int plen, int *family)
{
    if (address_arg(b, family) < 0)
        return -1;
    if (plen < 0 || plen > (int)b->len * 8) {
        PyErr_SetString(PyExc_ValueError, "prefix length out of range");
        return -1;
    }
    return 0;
}

/* The engine's buffers are in use (a read loop or a fuzz call is running, and a punt handler
 * called back): what would free or reuse them is refused. */
static int engine_busy(Engine *self)
{
    if (self->ready && self->e.busy) {
        PyErr_SetString(PyExc_RuntimeError, "the engine is reading: not from its punt handler");
        return 1;
    }
    return 0;
}

static int engine_ready(Engine *self)
{
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Engine.__init__ was not called");
        return 0;
    }
    return 1;
}

/* gso_peers: a sequence of at most FP_GSO_PEERS_MAX address strings (IPv4 or IPv6). */
static int parse_gso_peers(PyObject *seq, int *n, uint8_t family[], uint8_t addr[][16])
{
    PyObject *fast = PySequence_Fast(seq, "gso_peers must be a sequence of addresses");
    if (!fast)
        return -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast);
    if (len > FP_GSO_PEERS_MAX) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "at most %d gso_peers", FP_GSO_PEERS_MAX);
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        const char *text = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(fast, i));
        if (!text) {
            Py_DECREF(fast);
            return -1;
        }
        memset(addr[i], 0, 16);
        if (inet_pton(AF_INET, text, addr[i]) == 1)
            family[i] = 4;
        else if (inet_pton(AF_INET6, text, addr[i]) == 1)
            family[i] = 6;
        else {
            Py_DECREF(fast);
            PyErr_Format(PyExc_ValueError, "gso_peers: %s is not an IP address", text);
            return -1;
        }
    }
    *n = (int)len;
    Py_DECREF(fast);
    return 0;
}

static int Engine_init(Engine *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"itr",    "etr",        "rtr",      "mtu", "tun_fd", "vnet",
                            "gso",    "shared",     "table_fd", "table_size", "gso_peers",
                            "busy_poll_us", NULL};
    int itr = 0, etr = 0, rtr = 0, mtu = 1500, tun_fd = -1, vnet = 0, gso = 0, shared = 0;
    int table_fd = -1;
    Py_ssize_t table_size = 0;
    PyObject *gso_peers = NULL;
    int busy_poll_us = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$pppiipppinOi", names, &itr, &etr, &rtr, &mtu,
                                     &tun_fd, &vnet, &gso, &shared, &table_fd, &table_size,
                                     &gso_peers, &busy_poll_us))
        return -1;
    if (busy_poll_us < 0 || busy_poll_us > FP_BUSY_POLL_MAX_US) {
        PyErr_Format(PyExc_ValueError, "busy_poll_us %d outside 0..%d", busy_poll_us,
                     FP_BUSY_POLL_MAX_US);
        return -1;
    }
    int npeers = 0;
    uint8_t peer_family[FP_GSO_PEERS_MAX], peer[FP_GSO_PEERS_MAX][16];
    if (gso_peers && gso_peers != Py_None &&
        parse_gso_peers(gso_peers, &npeers, peer_family, peer) < 0)
        return -1;
    if (table_size < 0 || (shared && table_fd >= 0)) {
        PyErr_SetString(PyExc_ValueError,
                        "shared (this engine writes the table) or table_fd (it reads "
                        "another's), not both; table_size >= 0");
        return -1;
    }
    if (engine_busy(self))
        return -1;
    if (mtu < FP_MTU_MIN || mtu > 65535) {
        PyErr_Format(PyExc_ValueError, "mtu %d outside %d..65535", mtu, FP_MTU_MIN);
        return -1;
    }
    if (self->ready)
        fp_engine_free(&self->e);
    self->ready = 0;
    if (fp_engine_init(&self->e) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    self->ready = 1;
    if (fp_set_tun(&self->e, tun_fd) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    /* shared: when the region cannot be made the table stays private (table_fd() says -1) */
    if (shared)
        (void)fp_map_share(&self->e.map, (size_t)table_size);
    if (table_fd >= 0 && fp_map_attach(&self->e.map, table_fd) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->e.itr = itr;
    self->e.etr = etr;
    self->e.rtr = rtr;
    self->e.mtu = mtu;
    self->e.vnet = vnet;
    self->e.gso = gso;
    self->e.busy_poll_us = (uint32_t)busy_poll_us;
    self->e.ngso_peers = npeers;
    memcpy(self->e.gso_peer_family, peer_family, (size_t)npeers);
    memcpy(self->e.gso_peer, peer, sizeof peer[0] * (size_t)npeers);
    return 0;
}

static void Engine_dealloc(Engine *self)
{
    if (self->ready)
        fp_engine_free(&self->e); /* closes the engine's own descriptors */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Engine_set_pool(Engine *self, PyObject *args)
{
    int family;
    PyObject *fds;
    if (!PyArg_ParseTuple(args, "iO", &family, &fds))
        return NULL;
    if (!engine_ready(self) || engine_busy(self))
        return NULL;
    PyObject *seq = PySequence_Fast(fds, "fds must be a sequence of file descriptors");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if ((family != 4 && family != 6) || n > FP_POOL_MAX) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "family 4 or 6, at most 64 sockets");
        return NULL;
    }
    int given[FP_POOL_MAX];
    for (Py_ssize_t i = 0; i < n; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if ((fd == -1 && PyErr_Occurred()) || fd < INT_MIN || fd > INT_MAX) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_OverflowError, "not a file descriptor");
            Py_DECREF(seq);
            return NULL;
        }
        given[i] = (int)fd;
    }
    Py_DECREF(seq);
    if (fp_set_pool(&self->e, family, given, (int)n) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *Engine_set_data_socket(Engine *self, PyObject *args)
{
    int family, fd;
    if (!PyArg_ParseTuple(args, "ii", &family, &fd))
        return NULL;
    if (!engine_ready(self) || engine_busy(self))
        return NULL;
    if (family != 4 && family != 6) {
        PyErr_SetString(PyExc_ValueError, "family 4 or 6");
        return NULL;
    }
    if (fp_set_data_socket(&self->e, family, fd) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *Engine_close(Engine *self, PyObject *unused)
{
    if (!engine_ready(self) || engine_busy(self))
        return NULL;
    fp_close_descriptors(&self->e);
    Py_RETURN_NONE;
}

/* A flag of the running engine, set from one bool argument. */
static PyObject *set_flag(Engine *self, PyObject *args, int *field)
{
    if (!engine_ready(self))
        return NULL;
    int flag;
    if (!PyArg_ParseTuple(args, "p", &flag))
        return NULL;
    *field = flag;
    Py_RETURN_NONE;
}

static PyObject *Engine_set_punt_all(Engine *self, PyObject *args)
{
    return set_flag(self, args, &self->e.punt_all);
}

static PyObject *Engine_set_gso(Engine *self, PyObject *args)
{
    return set_flag(self, args, &self->e.gso);
}

/* A change refused by a reader of the shared table, or that failed: the Python error. */
static PyObject *map_error(void)
{
    if (errno == EPERM)
        PyErr_SetString(PyExc_RuntimeError,
                        "this engine reads a shared table: the writer's engine changes it");
    else if (errno == ENOMEM)
        PyErr_NoMemory();
    else
        PyErr_SetFromErrno(PyExc_OSError);
    return NULL;
}

static PyObject *Engine_map_set(Engine *self, PyObject *args)
{
    if (!engine_ready(self))
        return NULL;
    unsigned long iid;
    Py_buffer prefix;
    int plen, family;
    PyObject *rlocs;
    int all_down = 0;
    if (!PyArg_ParseTuple(args, "O&y*iO|p", iid_converter, &iid, &prefix, &plen, &rlocs,
                          &all_down))
        return NULL;
    PyObject *seq = NULL;
    fp_record_copy buf;
    fp_record *r = (fp_record *)(void *)buf.bytes;
    if (prefix_args(&prefix, plen, &family) < 0)
        goto fail;
    Py_ssize_t n = 0;
    if (rlocs != Py_None) {
        seq = PySequence_Fast(rlocs, "rlocs: a sequence of (address, port, weight, via_data)");
        if (!seq)
            goto fail;
        n = PySequence_Fast_GET_SIZE(seq);
        if (n > 255) {
            PyErr_SetString(PyExc_ValueError, "at most 255 RLOCs");
            goto fail;
        }
    }
    memset(r, 0, sizeof *r + (size_t)n * sizeof(fp_rloc));
    r->n = (uint16_t)n;
    r->all_down = (uint8_t)(all_down && n > 0);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_buffer addr;
        int port, weight, via, afam;
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "an RLOC is a tuple (address, port, weight, via_data)");
            goto fail;
        }
        if (!PyArg_ParseTuple(item, "y*iip", &addr, &port, &weight, &via))
            goto fail;
        int bad = address_arg(&addr, &afam) < 0;
        if (!bad) {
            memcpy(r->rloc[i].addr, addr.buf, (size_t)addr.len);
            r->rloc[i].family = (uint8_t)afam;
        }
        PyBuffer_Release(&addr);
        if (bad)
            goto fail;
        if (port < 1 || port > 65535 || weight < 0 || weight > 255) {
            PyErr_SetString(PyExc_ValueError, "port 1..65535, weight 0..255");
            goto fail;
        }
        r->rloc[i].port = (uint16_t)port;
        r->rloc[i].weight = (uint32_t)weight;
        r->rloc[i].via_data = (uint8_t)via;
        r->total_weight += (uint32_t)weight;
    }
    if (fp_map_set(&self->e.map, (uint32_t)iid, family, prefix.buf, plen, r) < 0) {
        map_error();
        goto fail;
    }
    Py_XDECREF(seq);
    PyBuffer_Release(&prefix);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(seq);
    PyBuffer_Release(&prefix);
    return NULL;
}

static PyObject *table_remove(Engine *self, PyObject *args, int map)
{
    if (!engine_ready(self))
        return NULL;
    unsigned long iid;
    Py_buffer prefix;
    int plen, family;
    if (!PyArg_ParseTuple(args, "O&y*i", iid_converter, &iid, &prefix, &plen))
        return NULL;
    if (prefix_args(&prefix, plen, &family) < 0) {
        PyBuffer_Release(&prefix);
        return NULL;
    }
    int removed;
    if (map)
        removed = fp_map_remove(&self->e.map, (uint32_t)iid, family, prefix.buf, plen);
    else
        removed = lpm_remove(&self->e.db, (uint32_t)iid, family, prefix.buf, plen) != NULL;
    PyBuffer_Release(&prefix);
    if (removed < 0)
        return map_error();
    return PyBool_FromLong(removed);
}

static PyObject *Engine_map_remove(Engine *self, PyObject *args) { return table_remove(self, args, 1); }
static PyObject *Engine_db_remove(Engine *self, PyObject *args) { return table_remove(self, args, 0); }

static PyObject *Engine_map_clear(Engine *self, PyObject *unused)
{
    if (!engine_ready(self))
        return NULL;
    if (fp_map_clear(&self->e.map) < 0)
        return map_error();
    Py_RETURN_NONE;
}

static PyObject *Engine_db_clear(Engine *self, PyObject *unused)
{
    if (!engine_ready(self))
        return NULL;
    lpm_clear(&self->e.db, NULL);
    Py_RETURN_NONE;
}

static PyObject *Engine_db_set(Engine *self, PyObject *args)
{
    if (!engine_ready(self))
        return NULL;
    unsigned long iid;
    Py_buffer prefix;
    int plen, family;
    if (!PyArg_ParseTuple(args, "O&y*i", iid_converter, &iid, &prefix, &plen))
        return NULL;
    void *old;
    int bad = prefix_args(&prefix, plen, &family) < 0 ||
              lpm_insert(&self->e.db, (uint32_t)iid, family, prefix.buf, plen, (void *)1, &old) < 0;
    PyBuffer_Release(&prefix);
    if (bad)
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *rloc_list(const fp_record *r)
{
    PyObject *list = PyList_New(r->n);
    for (int i = 0; list && i < r->n; i++) {
        const fp_rloc *x = &r->rloc[i];
        PyObject *t = Py_BuildValue("(y#iiO)", x->addr, (Py_ssize_t)(x->family == 4 ? 4 : 16),
                                    x->port, (int)x->weight, x->via_data ? Py_True : Py_False);
        if (!t) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, t);
    }
    return list;
}

static PyObject *Engine_lookup(Engine *self, PyObject *args)
{
    if (!engine_ready(self))
        return NULL;
    unsigned long iid;
    Py_buffer addr;
    int family;
    if (!PyArg_ParseTuple(args, "O&y*", iid_converter, &iid, &addr))
        return NULL;
    if (address_arg(&addr, &family) < 0) {
        PyBuffer_Release(&addr);
        return NULL;
    }
    int busy;
    fp_record_copy copy;
    const fp_record *r = fp_map_find(&self->e.map, (uint32_t)iid, family, addr.buf, &copy, &busy);
    PyBuffer_Release(&addr);
    if (busy) {
        PyErr_SetString(PyExc_BlockingIOError, "the shared table kept changing: try again");
        return NULL;
    }
    if (!r)
        Py_RETURN_NONE;
    return rloc_list(r);
}

static PyObject *Engine_bench_lookup(Engine *self, PyObject *args)
{
    if (!engine_ready(self))
        return NULL;
    unsigned long iid;
    Py_buffer addrs;
    int width, rounds, record = 0;
    if (!PyArg_ParseTuple(args, "O&y*ii|p", iid_converter, &iid, &addrs, &width, &rounds,
                          &record))
        return NULL;
    if ((width != 4 && width != 16) || addrs.len < width || rounds < 1) {
        PyBuffer_Release(&addrs);
        PyErr_SetString(PyExc_ValueError, "width 4 or 16, at least one address and one round");
        return NULL;
    }
    Py_ssize_t count = addrs.len / width;
    const uint8_t *base = addrs.buf;
    struct timespec a, b;
    size_t hits = 0, rlocs = 0;
    int busy;
    fp_record_copy copy;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int k = 0; k < rounds; k++)
        for (Py_ssize_t i = 0; i < count; i++) {
            const fp_record *r = fp_map_find(&self->e.map, (uint32_t)iid, width == 4 ? 4 : 6,
                                             base + i * width, &copy, &busy);
            hits += r != NULL;
            if (r && record) /* what forwarding reads next (a reader has copied it already) */
                rlocs += r->n;
        }
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (rlocs == (size_t)-1) /* keeps the record reads */
        hits++;
    PyBuffer_Release(&addrs);
    double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    return Py_BuildValue("(dn)", ns / ((double)count * rounds), (Py_ssize_t)hits);
}

/* Where punted packets go: a handler called at once, in order with what the engine writes
 * and sends itself, or (handler NULL) a list returned at the end. */
typedef struct {
    PyObject *list;
    PyObject *handler;
} punt_ctx;

static int punt_result(punt_ctx *ctx, PyObject *item)
{
    if (!item)
        return -1;
    int r;
    if (ctx->handler) {
        PyObject *out = PyObject_CallObject(ctx->handler, item);
        r = out ? 0 : -1;
        Py_XDECREF(out);
    } else {
        r = PyList_Append(ctx->list, item);
    }
    Py_DECREF(item);
    return r;
}

static int punt_tun(void *ctx, const uint8_t *p, size_t n)
{
    punt_ctx *c = ctx;
    if (!c->handler) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
        if (!b)
            return -1;
        int r = PyList_Append(c->list, b);
        Py_DECREF(b);
        return r;
    }
    return punt_result(c, Py_BuildValue("(y#)", p, (Py_ssize_t)n));
}

static PyObject *address_text(const struct sockaddr_storage *src, int *port)
{
    char text[INET6_ADDRSTRLEN];
    if (src->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)src;
        inet_ntop(AF_INET, &s->sin_addr, text, sizeof text);
        *port = ntohs(s->sin_port);
    } else {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)src;
        inet_ntop(AF_INET6, &s->sin6_addr, text, sizeof text);
        *port = ntohs(s->sin6_port);
    }
    return PyUnicode_FromString(text);
}

static int punt_udp(void *ctx, const uint8_t *p, size_t n, int ttl, int tos,
                    const struct sockaddr_storage *src)
{
    int port;
    PyObject *host = address_text(src, &port);
    if (!host)
        return -1;
    return punt_result(ctx, Py_BuildValue("(y#iiNi)", p, (Py_ssize_t)n, ttl, tos, host, port));
}

static int punt_start(punt_ctx *ctx, PyObject *handler)
{
    ctx->handler = handler == Py_None ? NULL : handler;
    if (ctx->handler && !PyCallable_Check(ctx->handler)) {
        PyErr_SetString(PyExc_TypeError, "the handler must be callable");
        return -1;
    }
    ctx->list = PyList_New(0);
    return ctx->list ? 0 : -1;
}

static PyObject *io_result(int r, punt_ctx *ctx)
{
    if (r == -1) {
        Py_DECREF(ctx->list);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (r == -2) {
        Py_DECREF(ctx->list);
        return NULL;
    }
    return ctx->list;
}

static PyObject *Engine_from_tun(Engine *self, PyObject *args)
{
    int budget = 4;
    PyObject *handler = Py_None;
    if (!PyArg_ParseTuple(args, "|Oi", &handler, &budget))
        return NULL;
    if (!engine_ready(self) || engine_busy(self))
        return NULL;
    if (self->e.tun_fd < 0) {
        PyErr_SetString(PyExc_RuntimeError, "no TUN device");
        return NULL;
    }
    punt_ctx ctx;
    if (punt_start(&ctx, handler) < 0)
        return NULL;
    self->e.busy = 1;
    int r = fp_from_tun(&self->e, budget, punt_tun, &ctx);
    self->e.busy = 0;
    return io_result(r, &ctx);
}

static PyObject *Engine_from_udp(Engine *self, PyObject *args)
{
    int fd, budget = 4;
    PyObject *handler = Py_None;
    if (!PyArg_ParseTuple(args, "i|Oi", &fd, &handler, &budget))
        return NULL;
    if (!engine_ready(self) || engine_busy(self))
        return NULL;
    punt_ctx ctx;
    if (punt_start(&ctx, handler) < 0)
        return NULL;
    self->e.busy = 1; /* fd is borrowed for this call: the caller holds its socket */
    int r = fp_from_udp(&self->e, fd, budget, punt_udp, &ctx);
    self->e.busy = 0;
    return io_result(r, &ctx);
}

/* fds: a sequence of at most FP_POOL_MAX descriptors (4341 sockets), for busy_poll/serve. */
static int parse_fds(PyObject *seq, const char *what, int fds[FP_POOL_MAX], int *n)
{
    PyObject *fast = PySequence_Fast(seq, "fds must be a sequence of descriptors");
    if (!fast)
        return -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast);
    if (len > FP_POOL_MAX) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "%s: at most %d sockets", what, FP_POOL_MAX);
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        if ((fd == -1 && PyErr_Occurred()) || fd < 0 || fd > INT_MAX) {
            Py_DECREF(fast);
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "%s: a descriptor out of range", what);
            return -1;
        }
        fds[i] = (int)fd;
    }
    Py_DECREF(fast);
    *n = (int)len;
    return 0;
}

/* Both punt handlers of busy_poll/serve (callables, not None). */
static int punt_pair(punt_ctx *tun_ctx, PyObject *tun_handler, punt_ctx *udp_ctx,
                     PyObject *udp_handler, const char *what)
{
    if (punt_start(tun_ctx, tun_handler) < 0)
        return -1;
    if (punt_start(udp_ctx, udp_handler) < 0) {
        Py_DECREF(tun_ctx->list);
        return -1;
    }
    if (!tun_ctx->handler || !udp_ctx->handler) {
        Py_DECREF(tun_ctx->list);
        Py_DECREF(udp_ctx->list);
        PyErr_Format(PyExc_TypeError, "%s needs both handlers", what);
        return -1;
    }
    return 0;
}

/* The end of busy_poll/serve: r as fp_from_tun's; value on success. */
static PyObject *pair_result(int r, punt_ctx *tun_ctx, punt_ctx *udp_ctx, PyObject *value)
{
    Py_DECREF(udp_ctx->list);
    PyObject *done = io_result(r, tun_ctx); /* an empty list: the handlers took every punt */
    if (!done)
        return NULL;
    Py_DECREF(done);
    return Py_NewRef(value);
}

static PyObject *Engine_busy_poll(Engine *self, PyObject *args)
{
    PyObject *seq, *tun_handler, *udp_handler;
    if (!PyArg_ParseTuple(args, "OOO", &seq, &tun_handler, &udp_handler))
        return NULL;
    if (!engine_ready(self) || engine_busy(self))
        return NULL;
    int fds[FP_POOL_MAX], n;
    punt_ctx tun_ctx, udp_ctx;
    if (parse_fds(seq, "busy_poll", fds, &n) < 0 ||
        punt_pair(&tun_ctx, tun_handler, &udp_ctx, udp_handler, "busy_poll") < 0)
        return NULL;
    self->e.busy = 1; /* the fds are borrowed for this call */
    int r = fp_busy_poll(&self->e, fds, n, punt_tun, &tun_ctx, punt_udp, &udp_ctx);
    self->e.busy = 0;
    return pair_result(r, &tun_ctx, &udp_ctx, Py_None);
}

#define SERVE_CONTROL UINT32_MAX
#define SERVE_TUN (UINT32_MAX - 1)
#define SERVE_EVENTS 8

static uint64_t serve_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* The wait of serve(): epoll_wait with the GIL released. */
static int serve_wait(int ep, struct epoll_event *events, int timeout_ms)
{
    int n;
    Py_BEGIN_ALLOW_THREADS
    n = epoll_wait(ep, events, SERVE_EVENTS, timeout_ms);
    Py_END_ALLOW_THREADS
    return n;
}

/* serve()'s loop on epoll descriptor ep: 1 when the control descriptor became readable, 0
 * when timeout_ms passed, -1/-2 as fp_from_tun (-3: a signal handler raised). */
static int serve_loop(Engine *self, int ep, const int *fds, int n, int timeout_ms,
                      punt_ctx *tun_ctx, punt_ctx *udp_ctx)
{
    fp_engine *e = &self->e;
    uint64_t deadline = serve_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = serve_now_ms();
        int left = now >= deadline ? 0 : (int)(deadline - now);
        struct epoll_event events[SERVE_EVENTS];
        int ready = serve_wait(ep, events, left);
        if (ready < 0) {
            if (errno != EINTR)
                return -1;
            if (PyErr_CheckSignals() < 0)
                return -3;
            continue;
        }
        if (ready == 0 && left == 0)
            return 0;
        for (int i = 0; i < ready; i++)
            if (events[i].data.u32 == SERVE_CONTROL)
                return 1; /* table changes first: the packets wait (level-triggered) */
        for (int i = 0; i < ready; i++) {
            uint32_t which = events[i].data.u32;
            int r = 0;
            if (which == SERVE_TUN)
                r = fp_from_tun(e, 4, punt_tun, tun_ctx);
            else if (which < (uint32_t)n)
                r = fp_from_udp(e, fds[which], 4, punt_udp, udp_ctx);
            if (r < 0)
                return r;
        }
        if (ready > 0) {
            int r = fp_busy_poll(e, fds, n, punt_tun, tun_ctx, punt_udp, udp_ctx);
            if (r < 0)
                return r;
        }
    }
}

static PyObject *Engine_serve(Engine *self, PyObject *args)
{
    PyObject *seq, *tun_handler, *udp_handler;
    int control_fd, timeout_ms;
    if (!PyArg_ParseTuple(args, "OiiOO", &seq, &control_fd, &timeout_ms, &tun_handler,
                          &udp_handler))
        return NULL;
    if (!engine_ready(self) || engine_busy(self))
        return NULL;
    if (timeout_ms < 0) {
        PyErr_SetString(PyExc_ValueError, "serve: timeout_ms must be >= 0");
        return NULL;
    }
    int fds[FP_POOL_MAX], n;
    if (parse_fds(seq, "serve", fds, &n) < 0)
        return NULL;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    struct epoll_event ev = {.events = EPOLLIN};
    int bad = 0;
    ev.data.u32 = SERVE_CONTROL;
    bad |= control_fd >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, control_fd, &ev) < 0;
    ev.data.u32 = SERVE_TUN;
    bad |= !bad && self->e.tun_fd >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, self->e.tun_fd, &ev) < 0;
    for (int i = 0; !bad && i < n; i++) {
        ev.data.u32 = (uint32_t)i;
        bad |= epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0;
    }
    if (bad) {
        PyErr_SetFromErrno(PyExc_OSError);
        close(ep);
        return NULL;
    }
    punt_ctx tun_ctx, udp_ctx;
    if (punt_pair(&tun_ctx, tun_handler, &udp_ctx, udp_handler, "serve") < 0) {
        close(ep);
        return NULL;
    }
    self->e.busy = 1; /* the fds are borrowed for this call */
    int r = serve_loop(self, ep, fds, n, timeout_ms, &tun_ctx, &udp_ctx);
    self->e.busy = 0;
    int saved = errno;
    close(ep);
    errno = saved;
    if (r == -3) {
        Py_DECREF(tun_ctx.list);
        Py_DECREF(udp_ctx.list);
        return NULL;
    }
    return pair_result(r < 0 ? r : 0, &tun_ctx, &udp_ctx, r == 1 ? Py_True : Py_False);
}

static PyObject *Engine_forget_sources(Engine *self, PyObject *unused)
{
    if (!engine_ready(self))
        return NULL;
    memset(self->e.seen, 0, sizeof self->e.seen);
    self->e.nseen = 0;
    Py_RETURN_NONE;
}

static PyObject *Engine_seed(Engine *self, PyObject *args)
{
    if (!engine_ready(self))
        return NULL;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "K", &seed))
        return NULL;
    self->e.nonce_state = seed | 1;
    Py_RETURN_NONE;
}

static int put_count(PyObject *section, const char *name, uint64_t value)
{
    PyObject *v = PyLong_FromUnsignedLongLong(value);
    if (!v)
        return -1;
    int r = PyDict_SetItemString(section, name, v);
    Py_DECREF(v);
    return r;
}

typedef struct {
    const char *name;
    size_t offset; /* in fp_counters */
} counter_name;

#define COUNTER(name, field) {name, offsetof(fp_counters, field)}

/* Every counter under its name in lispd's stats ("drops": one reason each, named as the
 * Python path names a drop of the same meaning: send-failed, tun-write-failed). */
static const counter_name PACKET_COUNTERS[] = {
    COUNTER("itr.encap.packets", itr_encap_packets),
    COUNTER("itr.encap.bytes", itr_encap_bytes),
    COUNTER("etr.decap.packets", etr_decap_packets),
    COUNTER("etr.decap.bytes", etr_decap_bytes),
    COUNTER("rtr.reencap.packets", rtr_reencap_packets),
    COUNTER("rtr.reencap.bytes", rtr_reencap_bytes),
    COUNTER("itr.all-rlocs-down.packets", all_down_packets),
    COUNTER("itr.all-rlocs-down.bytes", all_down_bytes),
    {NULL, 0},
};
static const counter_name DROP_COUNTERS[] = {
    COUNTER("send-failed", send_failed),
    COUNTER("tun-write-failed", tun_write_failed),
    COUNTER("tso-unsupported", tso_unsupported),
    COUNTER("tun-read-short", tun_read_short),
    COUNTER("tun-read-truncated", tun_read_truncated),
    COUNTER("tun-bad-vnet-header", tun_bad_vnet),
    COUNTER("udp-read-truncated", udp_truncated),
    COUNTER("udp-control-truncated", udp_ctrunc),
    COUNTER("punt-aborted", punt_aborted),
    {NULL, 0},
};
static const counter_name FASTPATH_COUNTERS[] = {
    COUNTER("punted-tun", punted_tun),
    COUNTER("punted-udp", punted_udp),
    COUNTER("punted-table-busy", punted_table_busy),
    COUNTER("tun-superpackets", tun_superpackets),
    COUNTER("gso-sends", gso_sends),
    COUNTER("gro-datagrams", gro_datagrams),
    COUNTER("merged-writes", merged_writes),
    COUNTER("last-send-errno", last_send_errno),
    COUNTER("busy-polls", busy_polls),
    COUNTER("busy-poll-packets", busy_poll_packets),
    {NULL, 0},
};

static int put_section(PyObject *out, const char *name, const counter_name *which,
                       const fp_counters *c)
{
    PyObject *section = PyDict_New();
    if (!section)
        return -1;
    for (const counter_name *k = which; k->name; k++) {
        uint64_t value;
        memcpy(&value, (const char *)c + k->offset, sizeof value);
        if (put_count(section, k->name, value) < 0) {
            Py_DECREF(section);
            return -1;
        }
    }
    int r = PyDict_SetItemString(out, name, section);
    Py_DECREF(section);
    return r;
}

static PyObject *Engine_counters(Engine *self, PyObject *unused)
{
    if (!engine_ready(self))
        return NULL;
    PyObject *out = PyDict_New();
    if (!out || put_section(out, "packets", PACKET_COUNTERS, &self->e.c) < 0 ||
        put_section(out, "drops", DROP_COUNTERS, &self->e.c) < 0 ||
        put_section(out, "fastpath", FASTPATH_COUNTERS, &self->e.c) < 0) {
        Py_XDECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *Engine_memory(Engine *self, PyObject *unused)
{
    if (!engine_ready(self))
        return NULL;
    return PyLong_FromSize_t(fp_map_memory(&self->e.map) + lpm_memory(&self->e.db));
}

static PyObject *Engine_table_fd(Engine *self, PyObject *unused)
{
    if (!engine_ready(self))
        return NULL;
    return PyLong_FromLong(self->e.map.mode == FP_MAP_WRITER ? self->e.map.fd : -1);
}

static PyObject *Engine_table(Engine *self, PyObject *unused)
{
    if (!engine_ready(self))
        return NULL;
    static const char *modes[] = {"private", "shared", "reader"};
    fp_map_usage u;
    fp_map_usage_of(&self->e.map, &u);
    return Py_BuildValue("{sssnsnsnsnsnsK}", "mode", modes[self->e.map.mode], "records",
                         (Py_ssize_t)fp_map_count(&self->e.map), "reserved",
                         (Py_ssize_t)u.reserved, "allocated", (Py_ssize_t)u.allocated, "free",
                         (Py_ssize_t)u.free, "resident", (Py_ssize_t)u.resident, "sequence",
                         (unsigned long long)u.sequence);
}

/* (rloc, port, fd, ttl, tos, payload): fd is the caller's number for the chosen socket */
static PyObject *dest_tuple(const fp_dest *d, const uint8_t *payload, size_t n)
{
    return Py_BuildValue("(y#iiiiy#)", d->addr, (Py_ssize_t)(d->family == 4 ? 4 : 16), d->port,
                         d->given, d->ttl, d->tos, payload, (Py_ssize_t)n);
}

static PyObject *Engine_encap(Engine *self, PyObject *args)
{
    Py_buffer pkt;
    if (!PyArg_ParseTuple(args, "y*", &pkt))
        return NULL;
    if (!engine_ready(self)) {
        PyBuffer_Release(&pkt);
        return NULL;
    }
    size_t n = (size_t)pkt.len;
    uint8_t *buf = malloc(n + FP_LISP_HDR);
    if (!buf) {
        PyBuffer_Release(&pkt);
        return PyErr_NoMemory();
    }
    memcpy(buf + FP_LISP_HDR, pkt.buf, n);
    PyBuffer_Release(&pkt);
    fp_dest d;
    uint32_t iid;
    PyObject *out;
    wcursor all = wcur_make(buf, n + FP_LISP_HDR);
    if (fp_classify(&self->e, cur_make(buf + FP_LISP_HDR, n), -1, 0, n, &d, &iid) == FP_ENCAP &&
        fp_write_header(&self->e, all, iid) == 0)
        out = dest_tuple(&d, all.p, all.len);
    else
        out = Py_NewRef(Py_None);
    free(buf);
    return out;
}

static PyObject *Engine_datagram(Engine *self, PyObject *args)
{
    Py_buffer pkt;
    int ttl, tos;
    if (!PyArg_ParseTuple(args, "y*ii", &pkt, &ttl, &tos))
        return NULL;
    if (!engine_ready(self)) {
        PyBuffer_Release(&pkt);
        return NULL;
    }
    size_t n = (size_t)pkt.len;
    uint8_t *buf = malloc(n + 1);
    if (!buf) {
        PyBuffer_Release(&pkt);
        return PyErr_NoMemory();
    }
    memcpy(buf, pkt.buf, n);
    PyBuffer_Release(&pkt);
    fp_dest d;
    int what = fp_datagram_decision(&self->e, wcur_make(buf, n), ttl, tos, &d, NULL, NULL);
    PyObject *out;
    if (what == FP_TO_TUN)
        out = Py_BuildValue("(sy#)", "tun", buf + FP_LISP_HDR, (Py_ssize_t)(n - FP_LISP_HDR));
    else if (what == FP_REENCAP)
        out = Py_BuildValue("(sN)", "encap", dest_tuple(&d, buf, n));
    else
        out = Py_NewRef(Py_None);
    free(buf);
    return out;
}

/* --- fuzzing: the per-packet code of from_tun / from_udp on given bytes ---------------------- */

/* What the engine would have sent and written, and what it punted, in order. */
typedef struct {
    PyObject *events;
    int failed; /* a Python error is pending: capture nothing more */
} capture;

static int capture_append(capture *cap, PyObject *item)
{
    int r = item ? PyList_Append(cap->events, item) : -1;
    Py_XDECREF(item);
    if (r < 0)
        cap->failed = 1;
    return r;
}

static PyObject *joined(const struct iovec *v, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i].iov_len;
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!b)
        return NULL;
    char *at = PyBytes_AS_STRING(b);
    for (size_t i = 0; i < n; i++) {
        memcpy(at, v[i].iov_base, v[i].iov_len);
        at += v[i].iov_len;
    }
    return b;
}

/* One sendmsg as the kernel takes it: ("send", fd, rloc, port, ttl, tos, segment size,
 * [datagrams]) where the datagrams are the payload cut at the UDP_SEGMENT size, as GSO does. */
static int capture_send(void *ctx, int given, const struct msghdr *m)
{
    capture *cap = ctx;
    if (cap->failed) {
        errno = ENOMEM;
        return -1;
    }
    int ttl = -1, tos = -1, seg = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR((struct msghdr *)m, c)) {
        int v = 0;
        uint16_t s16 = 0;
        if (c->cmsg_level == IPPROTO_UDP) { /* UDP_SEGMENT */
            memcpy(&s16, CMSG_DATA(c), sizeof s16);
            seg = s16;
            continue;
        }
        memcpy(&v, CMSG_DATA(c), sizeof v);
        if (c->cmsg_type == IP_TTL || c->cmsg_type == IPV6_HOPLIMIT)
            ttl = v;
        else
            tos = v;
    }
    const uint8_t *addr;
    Py_ssize_t alen;
    int port;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    if (m->msg_namelen == sizeof sin) {
        memcpy(&sin, m->msg_name, sizeof sin);
        addr = (const uint8_t *)&sin.sin_addr;
        alen = 4;
        port = ntohs(sin.sin_port);
    } else {
        memcpy(&sin6, m->msg_name, sizeof sin6);
        addr = (const uint8_t *)&sin6.sin6_addr;
        alen = 16;
        port = ntohs(sin6.sin6_port);
    }
    PyObject *payload = joined(m->msg_iov, m->msg_iovlen);
    if (!payload)
        goto fail;
    Py_ssize_t total = PyBytes_GET_SIZE(payload), step = seg > 0 ? seg : total;
    PyObject *datagrams = PyList_New(0);
    for (Py_ssize_t off = 0; datagrams && (off < total || off == 0); off += step ? step : 1) {
        Py_ssize_t n = total - off < step ? total - off : step;
        PyObject *one = PyBytes_FromStringAndSize(PyBytes_AS_STRING(payload) + off, n);
        if (!one || PyList_Append(datagrams, one) < 0)
            Py_CLEAR(datagrams);
        Py_XDECREF(one);
        if (!step)
            break;
    }
    Py_DECREF(payload);
    if (!datagrams)
        goto fail;
    if (capture_append(cap, Py_BuildValue("(siy#iiiiN)", "send", given, addr, alen, port, ttl,
                                          tos, seg, datagrams)) < 0)
        goto fail;
    return 0;
fail:
    cap->failed = 1;
    errno = ENOMEM; /* counted as a failed send; the Python error is reported after the call */
    return -1;
}

static ssize_t capture_tun(void *ctx, const struct iovec *v, int n)
{
    capture *cap = ctx;
    PyObject *b = cap->failed ? NULL : joined(v, (size_t)n);
    if (!b) {
        cap->failed = 1;
        errno = ENOMEM;
        return -1;
    }
    Py_ssize_t total = PyBytes_GET_SIZE(b);
    if (capture_append(cap, Py_BuildValue("(sN)", "tun", b)) < 0) {
        errno = ENOMEM;
        return -1;
    }
    return (ssize_t)total;
}

static int capture_punt_tun(void *ctx, const uint8_t *p, size_t n)
{
    if (((capture *)ctx)->failed)
        return -1;
    return capture_append(ctx, Py_BuildValue("(sy#)", "punt", p, (Py_ssize_t)n));
}

static int capture_punt_udp(void *ctx, const uint8_t *p, size_t n, int ttl, int tos,
                            const struct sockaddr_storage *src)
{
    int port;
    PyObject *host = ((capture *)ctx)->failed ? NULL : address_text(src, &port);
    if (!host) {
        ((capture *)ctx)->failed = 1;
        return -1;
    }
    return capture_append(ctx, Py_BuildValue("(sy#iiNi)", "punt", p, (Py_ssize_t)n, ttl, tos,
                                             host, port));
}

/* Start a fuzz call: the engine's sends and TUN writes go to cap (the batch's sequence of
 * inputs, at most FP_BATCH, in *seq). */
static int fuzz_start(Engine *self, PyObject *inputs, PyObject **seq, capture *cap)
{
    if (!engine_ready(self) || engine_busy(self))
        return -1;
    *seq = PySequence_Fast(inputs, "a sequence of inputs (one batch)");
    if (!*seq)
        return -1;
    if (PySequence_Fast_GET_SIZE(*seq) > FP_BATCH) {
        PyErr_Format(PyExc_ValueError, "at most %d inputs per batch", FP_BATCH);
        Py_CLEAR(*seq);
        return -1;
    }
    cap->failed = 0;
    cap->events = PyList_New(0);
    if (!cap->events) {
        Py_CLEAR(*seq);
        return -1;
    }
    self->e.sink = (fp_sink){capture_send, capture_tun, cap};
    self->e.busy = 1;
    return 0;
}

static PyObject *fuzz_end(Engine *self, PyObject *seq, capture *cap, int failed)
{
    self->e.sink = (fp_sink){NULL, NULL, NULL};
    self->e.busy = 0;
    Py_DECREF(seq);
    if (failed || cap->failed || PyErr_Occurred()) {
        Py_DECREF(cap->events);
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return NULL;
    }
    return cap->events;
}

static PyObject *Engine_fuzz_tun(Engine *self, PyObject *args)
{
    PyObject *inputs, *seq;
    capture cap;
    if (!PyArg_ParseTuple(args, "O", &inputs) || fuzz_start(self, inputs, &seq, &cap) < 0)
        return NULL;
    fp_engine *e = &self->e;
    size_t room = fp_tun_read_room(e);
    int failed = 0;
    for (Py_ssize_t k = 0; !failed && k < PySequence_Fast_GET_SIZE(seq); k++) {
        Py_buffer b;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, k), &b, PyBUF_SIMPLE) < 0) {
            failed = 1;
            break;
        }
        size_t r = (size_t)b.len < room ? (size_t)b.len : room; /* what read() would return */
        memcpy(fp_tun_slot(e, (int)k), b.buf, r);
        PyBuffer_Release(&b);
        failed = fp_tun_packet(e, (int)k, r, capture_punt_tun, &cap) < 0;
    }
    fp_flush(e); /* the end of the round */
    return fuzz_end(self, seq, &cap, failed);
}

static PyObject *Engine_fuzz_udp(Engine *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"messages", "ttl", "tos", "source", "port", NULL};
    PyObject *inputs, *seq;
    int ttl = 64, tos = 0, port = 4341;
    Py_buffer source = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|iiy*i", names, &inputs, &ttl, &tos, &source,
                                     &port))
        return NULL;
    struct sockaddr_storage src;
    memset(&src, 0, sizeof src);
    int family = 0;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port 0..65535");
    } else if (source.buf == NULL) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sin.sin_addr.s_addr = htonl(0xC0000201); /* 192.0.2.1 */
        memcpy(&src, &sin, sizeof sin);
        family = 4;
    } else if (address_arg(&source, &family) == 0) {
        if (family == 4) {
            struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
            memcpy(&sin.sin_addr, source.buf, 4);
            memcpy(&src, &sin, sizeof sin);
        } else {
            struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
            memcpy(&sin6.sin6_addr, source.buf, 16);
            memcpy(&src, &sin6, sizeof sin6);
        }
    }
    if (source.buf)
        PyBuffer_Release(&source);
    capture cap;
    if (!family || fuzz_start(self, inputs, &seq, &cap) < 0)
        return NULL;
    fp_engine *e = &self->e;
    size_t room = FP_SLOT - FP_HEADROOM;
    int failed = 0;
    for (Py_ssize_t k = 0; !failed && k < PySequence_Fast_GET_SIZE(seq); k++) {
        Py_buffer b;
        int seg;
        PyObject *item = PySequence_Fast_GET_ITEM(seq, k);
        if (!PyTuple_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "a message is a tuple (payload, gro_segment_size)");
            failed = 1;
            break;
        }
        if (!PyArg_ParseTuple(item, "y*i", &b, &seg)) {
            failed = 1;
            break;
        }
        /* what recvmmsg would report: the bytes that fit, MSG_TRUNC for the rest */
        size_t len = (size_t)b.len < room ? (size_t)b.len : room;
        int flags = (size_t)b.len > room ? MSG_TRUNC : 0;
        memcpy(fp_udp_slot(e, (int)k), b.buf, len);
        PyBuffer_Release(&b);
        failed = fp_udp_message(e, (int)k, len, flags, ttl, tos, seg, &src, capture_punt_udp,
                                &cap) < 0;
    }
    fp_end_batch(e); /* the end of the round */
    return fuzz_end(self, seq, &cap, failed);
}

static PyMethodDef Engine_methods[] = {
    {"set_pool", (PyCFunction)Engine_set_pool, METH_VARARGS,
     "set_pool(family, fds): the sockets encapsulated packets leave from, chosen by flow hash "
     "(the engine keeps dup()s of them, closed by close() or when it is freed)."},
    {"set_data_socket", (PyCFunction)Engine_set_data_socket, METH_VARARGS,
     "set_data_socket(family, fd): the 4341 socket, for NAT-translated destinations (a dup(), "
     "as set_pool's; fd -1: none)."},
    {"close", (PyCFunction)Engine_close, METH_NOARGS,
     "close(): close the engine's own copies of the TUN and the send sockets (it dup()s what "
     "it is given); the engine then punts what it would send, and from_tun raises."},
    {"set_punt_all", (PyCFunction)Engine_set_punt_all, METH_VARARGS,
     "set_punt_all(flag): hand every packet to Python (behind a NAT: all goes to RTRs)."},
    {"set_gso", (PyCFunction)Engine_set_gso, METH_VARARGS,
     "set_gso(flag): send runs to one RLOC as UDP GSO bursts (the gso option, changed later)."},
    {"map_set", (PyCFunction)Engine_map_set, METH_VARARGS,
     "map_set(iid, prefix, plen, rlocs, all_down=False): install a forwarding record; rlocs "
     "None punts; all_down: the RLOCs are down, used anyway (counted)."},
    {"map_remove", (PyCFunction)Engine_map_remove, METH_VARARGS,
     "map_remove(iid, prefix, plen) -> bool"},
    {"map_clear", (PyCFunction)Engine_map_clear, METH_NOARGS, "Remove every record."},
    {"db_set", (PyCFunction)Engine_db_set, METH_VARARGS, "db_set(iid, prefix, plen)"},
    {"db_remove", (PyCFunction)Engine_db_remove, METH_VARARGS, "db_remove(iid, prefix, plen)"},
    {"db_clear", (PyCFunction)Engine_db_clear, METH_NOARGS, "Forget the local EID-prefixes."},
    {"lookup", (PyCFunction)Engine_lookup, METH_VARARGS,
     "lookup(iid, address) -> the matching record's RLOCs, or None."},
    {"bench_lookup", (PyCFunction)Engine_bench_lookup, METH_VARARGS,
     "bench_lookup(iid, addresses, width, rounds, record=False) -> (ns per lookup, hits); "
     "record: each lookup also reads the record found, as forwarding does."},
    {"from_tun", (PyCFunction)Engine_from_tun, METH_VARARGS,
     "from_tun([handler[, budget]]): handle what the TUN has; each packet for the Python "
     "path goes to handler(packet) at once, in order, or (no handler) into the list returned."},
    {"busy_poll", (PyCFunction)Engine_busy_poll, METH_VARARGS,
     "busy_poll(fds, tun_handler, udp_handler): after a batch, keep reading the TUN and the "
     "4341 sockets fds without sleeping until busy_poll_us (an Engine() option, 0: return at "
     "once) pass with nothing read, or 2 ms in all; what is for Python goes to the handlers "
     "as with from_tun and from_udp."},
    {"serve", (PyCFunction)Engine_serve, METH_VARARGS,
     "serve(fds, control_fd, timeout_ms, tun_handler, udp_handler) -> bool: a worker's loop "
     "in C: wait (the GIL released) for the TUN, the 4341 sockets fds or control_fd, handle "
     "the packets (then busy_poll), until control_fd is readable (True) or timeout_ms pass "
     "(False); control_fd -1: none.  Punts go to the handlers as with from_tun/from_udp."},
    {"from_udp", (PyCFunction)Engine_from_udp, METH_VARARGS,
     "from_udp(fd[, handler[, budget]]): the same for a 4341 socket; handler(payload, ttl, "
     "tos, source, port), or (no handler) a list of those tuples."},
    {"forget_sources", (PyCFunction)Engine_forget_sources, METH_NOARGS,
     "Punt the next packet of every ITR again (Python refreshes its list of recent ITRs)."},
    {"seed", (PyCFunction)Engine_seed, METH_VARARGS, "seed(n): the nonce generator's state."},
    {"counters", (PyCFunction)Engine_counters, METH_NOARGS, "Counters, as lispd's stats."},
    {"memory", (PyCFunction)Engine_memory, METH_NOARGS, "Bytes held by the tables."},
    {"table_fd", (PyCFunction)Engine_table_fd, METH_NOARGS,
     "The shared forwarding table's descriptor (this engine writes it), or -1."},
    {"table", (PyCFunction)Engine_table, METH_NOARGS,
     "The forwarding table: mode (private, shared, reader), records, and for a shared one "
     "reserved, allocated, free and resident bytes and the sequence."},
    {"encap", (PyCFunction)Engine_encap, METH_VARARGS,
     "encap(packet) -> (rloc, port, fd, ttl, tos, payload) or None (punt)."},
    {"datagram", (PyCFunction)Engine_datagram, METH_VARARGS,
     "datagram(payload, ttl, tos) -> ('tun', inner) | ('encap', (...)) | None (punt)."},
    {"fuzz_tun", (PyCFunction)Engine_fuzz_tun, METH_VARARGS,
     "fuzz_tun(reads) -> events.  For fuzzing and tests: one round of from_tun on the given "
     "reads (at most 64; each what read() on the TUN returns, virtio-net header first when "
     "the engine has vnet), sends and TUN writes captured instead of made: a list, in order, "
     "of ('punt', packet), ('send', fd, rloc, port, ttl, tos, segment_size, [datagrams]) and "
     "('tun', bytes written).  Drops show in counters()."},
    {"fuzz_udp", (PyCFunction)(void (*)(void))Engine_fuzz_udp, METH_VARARGS | METH_KEYWORDS,
     "fuzz_udp(messages, ttl=64, tos=0, source=192.0.2.1, port=4341) -> events.  For fuzzing "
     "and tests: one round of from_udp on the given messages (at most 64 (payload, "
     "gro_segment_size) pairs, 0: not coalesced), captured as fuzz_tun; a punt is ('punt', "
     "payload, ttl, tos, source, port)."},
    {NULL, NULL, 0, NULL},
};

static Py_ssize_t Engine_len(Engine *self)
{
    return self->ready ? (Py_ssize_t)fp_map_count(&self->e.map) : 0;
}

static PySequenceMethods Engine_as_sequence = {.sq_length = (lenfunc)Engine_len};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lispd.engine._accel.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Engine(*, itr, etr, rtr, mtu, tun_fd, vnet, gso, shared, table_fd, table_size): "
              "the compiled packet loop and its forwarding tables.  vnet: the TUN carries "
              "virtio-net headers (TSO reads, merged TCP writes); gso: runs of datagrams to one "
              "destination are sent as UDP GSO bursts (else as separate datagrams of one "
              "sendmmsg).  shared: the map-cache table lives in a shared memory region of "
              "table_size bytes (0: 64 GiB, sparse) that other engines map read-only by "
              "table_fd (private when the region cannot be made: table_fd() is then -1); "
              "table_fd: read that region (map_set and friends are refused).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
    .tp_as_sequence = &Engine_as_sequence,
};

static PyObject *mod_segment(PyObject *m, PyObject *args)
{
    Py_buffer vh, pkt;
    if (!PyArg_ParseTuple(args, "y*y*", &vh, &pkt))
        return NULL;
    PyObject *out = NULL;
    vnet_hdr h;
    size_t stride = FP_HEADROOM + 65536, lens[FP_SEG_MAX];
    uint8_t *buf = NULL;
    if (vh.len != VNET_HDR_LEN || parse_vnet(cur_make(vh.buf, (size_t)vh.len), &h) < 0) {
        PyErr_SetString(PyExc_ValueError, "a virtio-net header is 10 bytes");
        goto done;
    }
    size_t max = h.gso_size ? (size_t)pkt.len / h.gso_size + 1 : 1;
    stride = FP_HEADROOM + 120 + h.gso_size;
    if (max > FP_SEG_MAX) {
        PyErr_SetString(PyExc_ValueError, "too many segments");
        goto done;
    }
    if (!(buf = malloc(stride * max))) {
        PyErr_NoMemory();
        goto done;
    }
    int segs = tso_segment(cur_make(pkt.buf, (size_t)pkt.len), &h, buf, stride * max, stride,
                           FP_HEADROOM, lens, (int)max);
    if (segs < 0) {
        PyErr_SetString(PyExc_ValueError, "not a TCP super-packet");
        goto done;
    }
    out = PyList_New(segs);
    for (int k = 0; out && k < segs; k++) {
        PyObject *b = PyBytes_FromStringAndSize((char *)buf + (size_t)k * stride + FP_HEADROOM,
                                                (Py_ssize_t)lens[k]);
        if (!b) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, k, b);
    }
done:
    free(buf);
    PyBuffer_Release(&vh);
    PyBuffer_Release(&pkt);
    return out;
}

static int append_merged(PyObject *list, tcp_merge *mg)
{
    size_t n = tcp_merge_finish(mg);
    PyObject *b = PyBytes_FromStringAndSize((char *)mg->buf, (Py_ssize_t)n);
    if (!b)
        return -1;
    int r = PyList_Append(list, b);
    Py_DECREF(b);
    return r;
}

static PyObject *mod_merge(PyObject *m, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "a sequence of packets");
    if (!seq)
        return NULL;
    tcp_merge mg;
    memset(&mg, 0, sizeof mg);
    mg.cap = 65536 + VNET_HDR_LEN;
    mg.buf = malloc(mg.cap);
    PyObject *out = PyList_New(0);
    static const uint8_t zero[VNET_HDR_LEN];
    for (Py_ssize_t i = 0; out && mg.buf && i < PySequence_Fast_GET_SIZE(seq); i++) {
        char *p;
        Py_ssize_t n;
        if (PyBytes_AsStringAndSize(PySequence_Fast_GET_ITEM(seq, i), &p, &n) < 0)
            goto fail;
        const uint8_t *q = (const uint8_t *)p;
        cursor c = cur_make(q, (size_t)n);
        if (tcp_merge_add(&mg, c))
            continue;
        if (mg.len && append_merged(out, &mg) < 0)
            goto fail;
        if (tcp_merge_start(&mg, c))
            continue;
        PyObject *b = PyBytes_FromStringAndSize(NULL, n + VNET_HDR_LEN);
        if (!b)
            goto fail;
        memcpy(PyBytes_AS_STRING(b), zero, VNET_HDR_LEN);
        memcpy(PyBytes_AS_STRING(b) + VNET_HDR_LEN, q, (size_t)n);
        int r = PyList_Append(out, b);
        Py_DECREF(b);
        if (r < 0)
            goto fail;
    }
    if (out && mg.len && append_merged(out, &mg) < 0)
        goto fail;
    free(mg.buf);
    Py_DECREF(seq);
    return out;
fail:
    free(mg.buf);
    Py_DECREF(seq);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *mod_flow_hash(PyObject *m, PyObject *arg)
{
    Py_buffer pkt;
    if (PyObject_GetBuffer(arg, &pkt, PyBUF_SIMPLE) < 0)
        return NULL;
    inner_flow f;
    PyObject *out = parse_inner(cur_make(pkt.buf, (size_t)pkt.len), &f) < 0
                        ? Py_NewRef(Py_None)
                        : PyLong_FromUnsignedLong(flow_hash(&f));
    PyBuffer_Release(&pkt);
    return out;
}

static PyObject *mod_complete_checksum(PyObject *m, PyObject *args)
{
    Py_buffer vh, pkt;
    if (!PyArg_ParseTuple(args, "y*y*", &vh, &pkt))
        return NULL;
    PyObject *out = NULL;
    vnet_hdr h;
    if (vh.len == VNET_HDR_LEN && parse_vnet(cur_make(vh.buf, (size_t)vh.len), &h) == 0) {
        out = PyBytes_FromStringAndSize(pkt.buf, pkt.len);
        if (out && csum_complete(wcur_make((uint8_t *)PyBytes_AS_STRING(out), (size_t)pkt.len),
                                 &h) < 0) {
            Py_CLEAR(out);
            PyErr_SetString(PyExc_ValueError, "checksum offsets outside the packet");
        }
    } else {
        PyErr_SetString(PyExc_ValueError, "a virtio-net header is 10 bytes");
    }
    PyBuffer_Release(&vh);
    PyBuffer_Release(&pkt);
    return out;
}

static PyMethodDef module_methods[] = {
    {"segment", mod_segment, METH_VARARGS,
     "segment(vnet_header, packet) -> the TCP segments of a TUN super-packet."},
    {"merge", mod_merge, METH_O,
     "merge(packets) -> what would be written to a vnet TUN: merged TCP super-packets "
     "and single packets, each after its 10-byte virtio-net header."},
    {"flow_hash", mod_flow_hash, METH_O, "flow_hash(packet) -> the 32-bit flow hash, or None."},
    {"complete_checksum", mod_complete_checksum, METH_VARARGS,
     "complete_checksum(vnet_header, packet) -> the packet with its partial checksum done."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef accel_module = {
    PyModuleDef_HEAD_INIT, "lispd.engine._accel",
    "The compiled fast path of lispd (see lispd/engine/csrc).", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__accel(void)
{
    if (PyType_Ready(&EngineType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&accel_module);
    if (!m)
        return NULL;
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&EngineType) < 0) {
        Py_DECREF(&EngineType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "VNET_HDR_LEN", VNET_HDR_LEN);
    return m;
}
