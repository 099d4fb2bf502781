"""The pure part of ``python -m benchmarks.profile``: the report lines it prints."""

from __future__ import annotations

from benchmarks.profile import top_lines


def test_top_lines_keeps_the_first_n_and_trims_the_empty_columns() -> None:
    text = (
        "    45.79%  python   [kernel.kallsyms]    -      -            \n"
        "    13.99%  python   _accel.so            -      -   \n"
        "     3.68%  python   libc.so.6\n"
    )
    assert top_lines(text, 2) == [
        "    45.79%  python   [kernel.kallsyms]",
        "    13.99%  python   _accel.so",
    ]
    assert top_lines("", 5) == []
