"""Which interpreter a benchmark ran on: the figures of a PGO+LTO build and of a plain one differ by 10-30%.

What a build says of itself is its configure arguments (sysconfig's CONFIG_ARGS): `--enable-optimizations`
(PGO) and `--with-lto`. A distribution may optimize outside configure (Debian builds its python3 with PGO
and LTO through its own rules, and its CONFIG_ARGS shows neither): the report says what configure was told,
nothing more.
"""

from __future__ import annotations

import os
import platform
import site
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass

# `make bench` sets it to Debian's python3.11 where there is one: the proxy pair runs on it too, same run.
SECOND_INTERPRETER_ENV = "BENCH_SECOND_PYTHON"
_SELF_DESCRIPTION = ("import platform, sys, sysconfig; print(platform.python_implementation(), "
                     "platform.python_version(), sys.executable, sysconfig.get_config_var('CONFIG_ARGS') or '', "
                     "sep='\\n')")
# `tracemesh ARGS` on another interpreter with this environment's packages and only those: -S leaves out that
# interpreter's own site-packages (a distribution's may hold other versions), addsitedir reads this
# environment's .pth files (the editable install's finder among them).
_RUN_TRACEMESH = ("import site, sys; site.addsitedir(sys.argv.pop(1)); from tracemesh_cli.main import main; "
                  "sys.exit(main())")


def describe(implementation: str, version: str, executable: str, config_args: str) -> str:
    """`CPython 3.11.7 at /usr/bin/python3.11 (configure: --enable-optimizations yes, --with-lto no)`."""
    def said(flag: str) -> str:
        return f"{flag} {'yes' if flag in config_args else 'no'}"

    return f"{implementation} {version} at {executable} (configure: {said('--enable-optimizations')}, " \
           f"{said('--with-lto')})"


def this_interpreter() -> str:
    return describe(platform.python_implementation(), platform.python_version(), sys.executable,
                    str(sysconfig.get_config_var("CONFIG_ARGS") or ""))


@dataclass(frozen=True)
class Interpreter:
    description: str
    tracemesh: list[str]  # argv that runs `tracemesh`: append the command and its arguments


def second_interpreter(environ: Mapping[str, str] = os.environ) -> Interpreter | None:
    """The interpreter SECOND_INTERPRETER_ENV names, if it is another build of this one's Python version."""
    executable = environ.get(SECOND_INTERPRETER_ENV, "")
    if not executable:
        return None
    try:
        done = subprocess.run([executable, "-S", "-c", _SELF_DESCRIPTION], capture_output=True, text=True,
                              timeout=30, check=False)
    except OSError as error:
        raise SystemExit(f"{SECOND_INTERPRETER_ENV}={executable}: does not run ({error})") from None
    if done.returncode != 0:
        raise SystemExit(f"{SECOND_INTERPRETER_ENV}={executable}: does not run ({done.stderr.strip()[-200:]})")
    implementation, version, real_executable, config_args = (done.stdout.split("\n") + [""] * 4)[:4]
    # A virtual environment's python is a link to its base interpreter: compare what both really are.
    if os.path.realpath(real_executable) == os.path.realpath(getattr(sys, "_base_executable", sys.executable)):
        return None  # the same interpreter as this environment's
    if version.rsplit(".", 1)[0] != platform.python_version().rsplit(".", 1)[0]:
        raise SystemExit(f"{SECOND_INTERPRETER_ENV}={executable} is Python {version}: this environment's packages "
                         f"(and the compiled sidecar) are for {platform.python_version()}")
    return Interpreter(describe(implementation, version, real_executable, config_args),
                       [executable, "-S", "-c", _RUN_TRACEMESH, site.getsitepackages()[0]])
