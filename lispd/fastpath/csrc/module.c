/* lispd.fastpath._accel: the Python face of the compiled fast path (see engine.h). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

typedef struct {
    PyObject_HEAD fp_engine e;
    int ready;
    size_t record_bytes;
    size_t records;
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

static int iid_arg(unsigned long iid)
{
    if (iid > 0xFFFFFF) {
        PyErr_SetString(PyExc_ValueError, "instance-ID out of range (24 bits)");
        return -1;
    }
    return 0;
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

static int Engine_init(Engine *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"itr", "etr", "rtr", "mtu", "tun_fd", "vnet", "gso", NULL};
    int itr = 0, etr = 0, rtr = 0, mtu = 1500, tun_fd = -1, vnet = 0, gso = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$pppiipp", names, &itr, &etr, &rtr, &mtu,
                                     &tun_fd, &vnet, &gso))
        return -1;
    if (self->ready)
        fp_engine_free(&self->e);
    if (fp_engine_init(&self->e) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    self->ready = 1;
    self->e.itr = itr;
    self->e.etr = etr;
    self->e.rtr = rtr;
    self->e.mtu = mtu;
    self->e.tun_fd = tun_fd;
    self->e.vnet = vnet;
    self->e.gso = gso;
    self->record_bytes = self->records = 0;
    return 0;
}

static void Engine_dealloc(Engine *self)
{
    if (self->ready)
        fp_engine_free(&self->e);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Engine_set_pool(Engine *self, PyObject *args)
{
    int family;
    PyObject *fds;
    if (!PyArg_ParseTuple(args, "iO", &family, &fds))
        return NULL;
    PyObject *seq = PySequence_Fast(fds, "fds must be a sequence of file descriptors");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if ((family != 4 && family != 6) || n > 64) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "family 4 or 6, at most 64 sockets");
        return NULL;
    }
    int fi = family == 6;
    for (Py_ssize_t i = 0; i < n; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (fd == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
        self->e.pool[fi][i] = (int)fd;
    }
    self->e.pool_n[fi] = (int)n;
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

static PyObject *Engine_set_data_socket(Engine *self, PyObject *args)
{
    int family, fd;
    if (!PyArg_ParseTuple(args, "ii", &family, &fd))
        return NULL;
    if (family != 4 && family != 6) {
        PyErr_SetString(PyExc_ValueError, "family 4 or 6");
        return NULL;
    }
    self->e.data_fd[family == 6] = fd;
    Py_RETURN_NONE;
}

static PyObject *Engine_set_punt_all(Engine *self, PyObject *args)
{
    int flag;
    if (!PyArg_ParseTuple(args, "p", &flag))
        return NULL;
    self->e.punt_all = flag;
    Py_RETURN_NONE;
}

static void forget_record(Engine *self, void *old)
{
    if (!old)
        return;
    fp_record *r = old;
    self->record_bytes -= sizeof *r + r->n * sizeof(fp_rloc);
    self->records--;
    free(r);
}

static PyObject *Engine_map_set(Engine *self, PyObject *args)
{
    unsigned long iid;
    Py_buffer prefix;
    int plen, family;
    PyObject *rlocs;
    if (!PyArg_ParseTuple(args, "ky*iO", &iid, &prefix, &plen, &rlocs))
        return NULL;
    PyObject *seq = NULL;
    fp_record *r = NULL;
    if (prefix_args(&prefix, plen, &family) < 0 || iid > 0xFFFFFF) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "instance-ID out of range");
        goto fail;
    }
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
    size_t size = sizeof *r + (size_t)n * sizeof(fp_rloc);
    r = calloc(1, size);
    if (!r) {
        PyErr_NoMemory();
        goto fail;
    }
    r->n = (uint16_t)n;
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
    void *old;
    if (lpm_insert(&self->e.map, (uint32_t)iid, family, prefix.buf, plen, r, &old) < 0) {
        PyErr_NoMemory();
        goto fail;
    }
    forget_record(self, old);
    self->record_bytes += size;
    self->records++;
    Py_XDECREF(seq);
    PyBuffer_Release(&prefix);
    Py_RETURN_NONE;
fail:
    free(r);
    Py_XDECREF(seq);
    PyBuffer_Release(&prefix);
    return NULL;
}

static PyObject *table_remove(Engine *self, PyObject *args, int map)
{
    unsigned long iid;
    Py_buffer prefix;
    int plen, family;
    if (!PyArg_ParseTuple(args, "ky*i", &iid, &prefix, &plen))
        return NULL;
    if (iid_arg(iid) < 0 || prefix_args(&prefix, plen, &family) < 0) {
        PyBuffer_Release(&prefix);
        return NULL;
    }
    void *old = lpm_remove(map ? &self->e.map : &self->e.db, (uint32_t)iid, family, prefix.buf,
                           plen);
    PyBuffer_Release(&prefix);
    if (map)
        forget_record(self, old);
    return PyBool_FromLong(old != NULL);
}

static PyObject *Engine_map_remove(Engine *self, PyObject *args) { return table_remove(self, args, 1); }
static PyObject *Engine_db_remove(Engine *self, PyObject *args) { return table_remove(self, args, 0); }

static PyObject *Engine_map_clear(Engine *self, PyObject *unused)
{
    lpm_clear(&self->e.map, free);
    self->record_bytes = self->records = 0;
    Py_RETURN_NONE;
}

static PyObject *Engine_db_clear(Engine *self, PyObject *unused)
{
    lpm_clear(&self->e.db, NULL);
    Py_RETURN_NONE;
}

static PyObject *Engine_db_set(Engine *self, PyObject *args)
{
    unsigned long iid;
    Py_buffer prefix;
    int plen, family;
    if (!PyArg_ParseTuple(args, "ky*i", &iid, &prefix, &plen))
        return NULL;
    void *old;
    int bad = iid_arg(iid) < 0 || prefix_args(&prefix, plen, &family) < 0 ||
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
    unsigned long iid;
    Py_buffer addr;
    int family;
    if (!PyArg_ParseTuple(args, "ky*", &iid, &addr))
        return NULL;
    if (iid_arg(iid) < 0 || address_arg(&addr, &family) < 0) {
        PyBuffer_Release(&addr);
        return NULL;
    }
    const fp_record *r = lpm_lookup(&self->e.map, (uint32_t)iid, family, addr.buf);
    PyBuffer_Release(&addr);
    if (!r)
        Py_RETURN_NONE;
    return rloc_list(r);
}

static PyObject *Engine_bench_lookup(Engine *self, PyObject *args)
{
    unsigned long iid;
    Py_buffer addrs;
    int width, rounds;
    if (!PyArg_ParseTuple(args, "ky*ii", &iid, &addrs, &width, &rounds))
        return NULL;
    if (iid_arg(iid) < 0) {
        PyBuffer_Release(&addrs);
        return NULL;
    }
    if ((width != 4 && width != 16) || addrs.len < width || rounds < 1) {
        PyBuffer_Release(&addrs);
        PyErr_SetString(PyExc_ValueError, "width 4 or 16, at least one address and one round");
        return NULL;
    }
    Py_ssize_t count = addrs.len / width;
    const uint8_t *base = addrs.buf;
    struct timespec a, b;
    size_t hits = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int k = 0; k < rounds; k++)
        for (Py_ssize_t i = 0; i < count; i++)
            hits += lpm_lookup(&self->e.map, (uint32_t)iid, width == 4 ? 4 : 6,
                               base + i * width) != NULL;
    clock_gettime(CLOCK_MONOTONIC, &b);
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
    if (self->e.tun_fd < 0) {
        PyErr_SetString(PyExc_RuntimeError, "no TUN device");
        return NULL;
    }
    punt_ctx ctx;
    if (punt_start(&ctx, handler) < 0)
        return NULL;
    return io_result(fp_from_tun(&self->e, budget, punt_tun, &ctx), &ctx);
}

static PyObject *Engine_from_udp(Engine *self, PyObject *args)
{
    int fd, budget = 4;
    PyObject *handler = Py_None;
    if (!PyArg_ParseTuple(args, "i|Oi", &fd, &handler, &budget))
        return NULL;
    punt_ctx ctx;
    if (punt_start(&ctx, handler) < 0)
        return NULL;
    return io_result(fp_from_udp(&self->e, fd, budget, punt_udp, &ctx), &ctx);
}

static PyObject *Engine_forget_sources(Engine *self, PyObject *unused)
{
    memset(self->e.seen, 0, sizeof self->e.seen);
    self->e.nseen = 0;
    Py_RETURN_NONE;
}

static PyObject *Engine_seed(Engine *self, PyObject *args)
{
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "K", &seed))
        return NULL;
    self->e.nonce_state = seed | 1;
    Py_RETURN_NONE;
}

static PyObject *Engine_counters(Engine *self, PyObject *unused)
{
    const fp_counters *c = &self->e.c;
    return Py_BuildValue(
        "{s:{s:K,s:K,s:K,s:K,s:K,s:K},s:{s:K,s:K,s:K},s:{s:K,s:K,s:K,s:K,s:K,s:K,s:K}}", "packets",
        "itr.encap.packets", c->itr_encap_packets, "itr.encap.bytes", c->itr_encap_bytes,
        "etr.decap.packets", c->etr_decap_packets, "etr.decap.bytes", c->etr_decap_bytes,
        "rtr.reencap.packets", c->rtr_reencap_packets, "rtr.reencap.bytes",
        c->rtr_reencap_bytes, "drops", "send-failed", c->send_failed, "tun-write-failed",
        c->tun_write_failed, "tso-unsupported", c->tso_unsupported, "fastpath", "punted-tun",
        c->punted_tun, "punted-udp", c->punted_udp, "tun-superpackets", c->tun_superpackets,
        "gso-sends", c->gso_sends, "gro-datagrams", c->gro_datagrams, "merged-writes",
        c->merged_writes, "last-send-errno", c->last_send_errno);
}

static PyObject *Engine_memory(Engine *self, PyObject *unused)
{
    return PyLong_FromSize_t(lpm_memory(&self->e.map) + self->record_bytes +
                             lpm_memory(&self->e.db));
}

static PyObject *dest_tuple(const fp_dest *d, const uint8_t *payload, size_t n)
{
    return Py_BuildValue("(y#iiiiy#)", d->addr, (Py_ssize_t)(d->family == 4 ? 4 : 16), d->port,
                         d->fd, d->ttl, d->tos, payload, (Py_ssize_t)n);
}

static PyObject *Engine_encap(Engine *self, PyObject *args)
{
    Py_buffer pkt;
    if (!PyArg_ParseTuple(args, "y*", &pkt))
        return NULL;
    uint8_t *buf = malloc((size_t)pkt.len + FP_LISP_HDR);
    if (!buf) {
        PyBuffer_Release(&pkt);
        return PyErr_NoMemory();
    }
    memcpy(buf + FP_LISP_HDR, pkt.buf, (size_t)pkt.len);
    fp_dest d;
    uint32_t iid;
    PyObject *out;
    size_t n = (size_t)pkt.len;
    if (fp_classify(&self->e, buf + FP_LISP_HDR, n, -1, 0, n, &d, &iid) == FP_ENCAP) {
        fp_write_header(&self->e, buf, iid);
        out = dest_tuple(&d, buf, n + FP_LISP_HDR);
    } else {
        out = Py_NewRef(Py_None);
    }
    free(buf);
    PyBuffer_Release(&pkt);
    return out;
}

static PyObject *Engine_datagram(Engine *self, PyObject *args)
{
    Py_buffer pkt;
    int ttl, tos;
    if (!PyArg_ParseTuple(args, "y*ii", &pkt, &ttl, &tos))
        return NULL;
    uint8_t *buf = malloc((size_t)pkt.len + 1);
    if (!buf) {
        PyBuffer_Release(&pkt);
        return PyErr_NoMemory();
    }
    size_t n = (size_t)pkt.len;
    memcpy(buf, pkt.buf, n);
    PyBuffer_Release(&pkt);
    fp_dest d;
    int what = fp_datagram_decision(&self->e, buf, n, ttl, tos, &d, NULL, NULL);
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

static PyMethodDef Engine_methods[] = {
    {"set_pool", (PyCFunction)Engine_set_pool, METH_VARARGS,
     "set_pool(family, fds): the sockets encapsulated packets leave from, chosen by flow hash."},
    {"set_data_socket", (PyCFunction)Engine_set_data_socket, METH_VARARGS,
     "set_data_socket(family, fd): the 4341 socket, for NAT-translated destinations."},
    {"set_punt_all", (PyCFunction)Engine_set_punt_all, METH_VARARGS,
     "set_punt_all(flag): hand every packet to Python (behind a NAT: all goes to RTRs)."},
    {"map_set", (PyCFunction)Engine_map_set, METH_VARARGS,
     "map_set(iid, prefix, plen, rlocs): install a forwarding record; rlocs None punts."},
    {"map_remove", (PyCFunction)Engine_map_remove, METH_VARARGS,
     "map_remove(iid, prefix, plen) -> bool"},
    {"map_clear", (PyCFunction)Engine_map_clear, METH_NOARGS, "Remove every record."},
    {"db_set", (PyCFunction)Engine_db_set, METH_VARARGS, "db_set(iid, prefix, plen)"},
    {"db_remove", (PyCFunction)Engine_db_remove, METH_VARARGS, "db_remove(iid, prefix, plen)"},
    {"db_clear", (PyCFunction)Engine_db_clear, METH_NOARGS, "Forget the local EID-prefixes."},
    {"lookup", (PyCFunction)Engine_lookup, METH_VARARGS,
     "lookup(iid, address) -> the matching record's RLOCs, or None."},
    {"bench_lookup", (PyCFunction)Engine_bench_lookup, METH_VARARGS,
     "bench_lookup(iid, addresses, width, rounds) -> (ns per lookup, hits)."},
    {"from_tun", (PyCFunction)Engine_from_tun, METH_VARARGS,
     "from_tun([handler[, budget]]): handle what the TUN has; each packet for the Python "
     "path goes to handler(packet) at once, in order, or (no handler) into the list returned."},
    {"from_udp", (PyCFunction)Engine_from_udp, METH_VARARGS,
     "from_udp(fd[, handler[, budget]]): the same for a 4341 socket; handler(payload, ttl, "
     "tos, source, port), or (no handler) a list of those tuples."},
    {"forget_sources", (PyCFunction)Engine_forget_sources, METH_NOARGS,
     "Punt the next packet of every ITR again (Python refreshes its list of recent ITRs)."},
    {"seed", (PyCFunction)Engine_seed, METH_VARARGS, "seed(n): the nonce generator's state."},
    {"counters", (PyCFunction)Engine_counters, METH_NOARGS, "Counters, as lispd's stats."},
    {"memory", (PyCFunction)Engine_memory, METH_NOARGS, "Bytes held by the tables."},
    {"encap", (PyCFunction)Engine_encap, METH_VARARGS,
     "encap(packet) -> (rloc, port, fd, ttl, tos, payload) or None (punt)."},
    {"datagram", (PyCFunction)Engine_datagram, METH_VARARGS,
     "datagram(payload, ttl, tos) -> ('tun', inner) | ('encap', (...)) | None (punt)."},
    {NULL, NULL, 0, NULL},
};

static Py_ssize_t Engine_len(Engine *self) { return (Py_ssize_t)self->records; }

static PySequenceMethods Engine_as_sequence = {.sq_length = (lenfunc)Engine_len};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lispd.fastpath._accel.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The compiled packet loop and its forwarding tables.",
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
    if (vh.len != VNET_HDR_LEN) {
        PyErr_SetString(PyExc_ValueError, "a virtio-net header is 10 bytes");
        goto done;
    }
    memcpy(&h, vh.buf, VNET_HDR_LEN);
    int max = h.gso_size ? (int)((size_t)pkt.len / h.gso_size + 1) : 1;
    stride = FP_HEADROOM + 120 + h.gso_size;
    if (max > FP_SEG_MAX || !(buf = malloc(stride * (size_t)max))) {
        PyErr_SetString(PyExc_ValueError, "too many segments");
        goto done;
    }
    int segs = tso_segment(pkt.buf, (size_t)pkt.len, &h, buf, stride, FP_HEADROOM, lens, max);
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
        if (tcp_merge_add(&mg, q, (size_t)n))
            continue;
        if (mg.len && append_merged(out, &mg) < 0)
            goto fail;
        if (tcp_merge_start(&mg, q, (size_t)n))
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
    PyObject *out = parse_inner(pkt.buf, (size_t)pkt.len, &f) < 0
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
    if (vh.len == VNET_HDR_LEN) {
        memcpy(&h, vh.buf, VNET_HDR_LEN);
        out = PyBytes_FromStringAndSize(pkt.buf, pkt.len);
        if (out && csum_complete((uint8_t *)PyBytes_AS_STRING(out), (size_t)pkt.len, &h) < 0) {
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
    PyModuleDef_HEAD_INIT, "lispd.fastpath._accel",
    "The compiled fast path of lispd (see lispd/fastpath/csrc).", -1, module_methods,
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
