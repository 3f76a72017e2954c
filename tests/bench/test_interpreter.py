"""`make bench` says which interpreter it measured (bench/interpreter.py)."""

from __future__ import annotations

import platform

from bench.interpreter import describe, this_interpreter


def test_the_configure_flags_of_an_optimized_build_are_reported() -> None:
    optimized = describe("CPython", "3.11.2", "/usr/bin/python3.11",
                         "'--enable-shared' '--with-lto' '--enable-optimizations'")
    plain = describe("CPython", "3.11.7", "/root/.pyenv/versions/3.11.7/bin/python3.11", "'--prefix=/root/.pyenv'")
    assert optimized == ("CPython 3.11.2 at /usr/bin/python3.11 "
                         "(configure: --enable-optimizations yes, --with-lto yes)")
    assert plain.endswith("(configure: --enable-optimizations no, --with-lto no)")


def test_this_interpreter_names_its_version() -> None:
    assert f"{platform.python_implementation()} {platform.python_version()} at " in this_interpreter()
