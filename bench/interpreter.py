"""Which interpreter a benchmark ran on: the figures of a PGO+LTO build and of a plain one differ by 10-30%.

What a build says of itself is its configure arguments (sysconfig's CONFIG_ARGS): `--enable-optimizations`
(PGO) and `--with-lto`. A distribution may optimize outside configure (Debian builds its python3 with PGO
and LTO through its own rules, and its CONFIG_ARGS shows neither): the report says what configure was told,
nothing more.
"""

from __future__ import annotations

import platform
import sys
import sysconfig


def describe(implementation: str, version: str, executable: str, config_args: str) -> str:
    """`CPython 3.11.7 at /usr/bin/python3.11 (configure: --enable-optimizations yes, --with-lto no)`."""
    def said(flag: str) -> str:
        return f"{flag} {'yes' if flag in config_args else 'no'}"

    return f"{implementation} {version} at {executable} (configure: {said('--enable-optimizations')}, " \
           f"{said('--with-lto')})"


def this_interpreter() -> str:
    return describe(platform.python_implementation(), platform.python_version(), sys.executable,
                    str(sysconfig.get_config_var("CONFIG_ARGS") or ""))
