"""LISP-DDT (RFC 8111): the mapping system as a delegation tree over many machines.

:mod:`lispd.ddt.authority` answers as a DDT node, :mod:`lispd.ddt.leaf` as a Map-Server at the
bottom of the tree, :mod:`lispd.ddt.resolver` walks the tree for a Map-Resolver with the
referrals it keeps in :mod:`lispd.ddt.cache`.  All sans-IO: messages and ``now`` in, datagrams
to send out.
"""
