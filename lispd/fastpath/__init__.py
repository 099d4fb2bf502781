"""The per-packet work: inner header parsing, flow hashing, RLOC choice, LISP header build and
parse, TTL/ECN rules and ICMP too-big messages.

This is the pure-Python reference implementation.  A compiled accelerator may replace pieces
behind the same functions later; the tests run the same vectors against both.
"""
