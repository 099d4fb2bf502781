"""lispd: a userspace LISP (Locator/ID Separation Protocol) router daemon for Linux."""

__version__ = "0.1.0"
