"""The per-packet work: inner header parsing, flow hashing, RLOC choice, LISP header build and
parse, TTL/ECN rules and ICMP too-big messages.

The modules here are the pure-Python reference implementation.  The compiled engine
(``csrc/``, imported as ``lispd.fastpath._accel`` and driven by ``compiled.py`` and, on further
cores, ``workers.py``/``worker.py``) does the same work for whole batches in C; the tests run the
same vectors through both.
"""
