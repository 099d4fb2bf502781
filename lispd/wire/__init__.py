"""Sans-IO codecs for every LISP wire format lispd speaks: bytes -> frozen dataclass -> bytes.

Nothing here touches a socket.  Every decoder raises :class:`~lispd.wire.errors.WireError`
(with a short ``reason``) on malformed input and nothing else.
"""
