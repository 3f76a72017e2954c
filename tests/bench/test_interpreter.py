"""`make bench` says which interpreter it measured (bench/interpreter.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from bench.interpreter import SECOND_INTERPRETER_ENV, describe, second_interpreter, this_interpreter

# Another build of this Python version on this machine, for the second-interpreter pair: Debian's, if it is one.
BASE = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
OTHER_PYTHON = next((path for path in ("/usr/bin/python3.11",)
                     if os.path.exists(path) and os.path.realpath(path) != BASE), None)


def test_the_configure_flags_of_an_optimized_build_are_reported() -> None:
    optimized = describe("CPython", "3.11.2", "/usr/bin/python3.11",
                         "'--enable-shared' '--with-lto' '--enable-optimizations'")
    plain = describe("CPython", "3.11.7", "/root/.pyenv/versions/3.11.7/bin/python3.11", "'--prefix=/root/.pyenv'")
    assert optimized == ("CPython 3.11.2 at /usr/bin/python3.11 "
                         "(configure: --enable-optimizations yes, --with-lto yes)")
    assert plain.endswith("(configure: --enable-optimizations no, --with-lto no)")


def test_this_interpreter_names_its_version() -> None:
    assert f"{platform.python_implementation()} {platform.python_version()} at " in this_interpreter()


def test_no_second_interpreter_unless_one_is_named_and_it_is_another_one() -> None:
    assert second_interpreter({}) is None
    assert second_interpreter({SECOND_INTERPRETER_ENV: sys.executable}) is None


def test_a_second_interpreter_that_does_not_run_is_refused_naming_the_variable() -> None:
    with pytest.raises(SystemExit, match=SECOND_INTERPRETER_ENV):
        second_interpreter({SECOND_INTERPRETER_ENV: "/nonexistent/python3"})


@pytest.mark.skipif(OTHER_PYTHON is None, reason="no other build of this Python version here (Debian's python3.11)")
def test_a_second_interpreter_runs_tracemesh_with_this_environments_packages() -> None:
    assert OTHER_PYTHON is not None
    second = second_interpreter({SECOND_INTERPRETER_ENV: OTHER_PYTHON})
    assert second is not None and second.description.startswith("CPython 3.11.")
    assert f" at {OTHER_PYTHON} " in second.description
    done = subprocess.run([*second.tracemesh, "proxy", "--help"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0 and "usage: tracemesh proxy" in done.stdout, done.stderr
