"""setup.py's compiler flags and its profile-guided builds (TRACEMESH_PGO), on a one-file extension with gcc:
symbols other than the module's init are hidden; `generate` builds code that writes counts where `use` looks for
them; `use` reads them (a source changed in between stops it) and stops, saying how, when there are none."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from setuptools.errors import CompileError

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine (PGO is gcc's)")

Build = Callable[[str, Path], object]

TINY = """
#include <Python.h>

int tiny_twice(long x) { return (int)(x * 2); }  /* not static: -fvisibility=hidden keeps it out of the exports */

static PyObject *twice(PyObject *self, PyObject *arg) {
    long x = PyLong_AsLong(arg);
    if (x == -1 && PyErr_Occurred()) return NULL;
    return PyLong_FromLong(x > 0 ? tiny_twice(x) : 0);
}

static PyMethodDef methods[] = {{"twice", twice, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "tiny", NULL, -1, methods};
PyMODINIT_FUNC PyInit_tiny(void) { return PyModule_Create(&module); }
"""


@pytest.fixture()
def tiny(tmp_path: Path, setup_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The extension's source, with setup.py's PGO objects (and counts) in tmp_path, `tiny` the profiled library."""
    source = tmp_path / "tiny.c"
    source.write_text(TINY)
    monkeypatch.setattr(setup_module, "PGO_BUILD_TEMP", tmp_path / "pgo-objects")
    monkeypatch.setattr(setup_module, "PROFILED_LIBRARY", "tiny")
    monkeypatch.setenv("TRACEMESH_MYPYC", "1")
    return source


def run_tiny(tmp_path: Path) -> str:
    """The built extension, imported and called in a process of its own: instrumented, it writes counts at exit."""
    done = subprocess.run([sys.executable, "-c", "import tiny; print(tiny.twice(21))"], cwd=tmp_path / "lib",
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def built(build_command: Build, source: Path) -> object:
    command = build_command("tiny", source)
    command.run()  # type: ignore[attr-defined]
    return command


def test_only_the_module_init_is_exported(tiny: Path, build_command: Build, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACEMESH_PGO", raising=False)
    built(build_command, tiny)
    assert run_tiny(tmp_path) == "42"
    [library] = (tmp_path / "lib").glob("tiny*.so")
    exported = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True,
                              check=True).stdout
    assert "PyInit_tiny" in exported
    assert "tiny_twice" not in exported  # a call to it stays inside the library, never through the PLT


def test_generate_writes_counts_where_use_reads_them(tiny: Path, build_command: Build, tmp_path: Path,
                                                     setup_module: ModuleType,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEMESH_PGO", "generate")
    command = built(build_command, tiny)
    assert command.build_temp == str(tmp_path / "pgo-objects")  # type: ignore[attr-defined]
    [object_file] = (tmp_path / "pgo-objects").rglob("tiny.o")
    counts = setup_module.counts_of(str(object_file))
    assert not counts.exists()  # counts come from running it, not from building it
    assert run_tiny(tmp_path) == "42"
    assert counts.exists()

    monkeypatch.setenv("TRACEMESH_PGO", "use")
    built(build_command, tiny)
    assert run_tiny(tmp_path) == "42"


def test_use_reads_the_counts_so_a_source_changed_since_stops_it(tiny: Path, build_command: Build,
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRACEMESH_PGO", "generate")
    built(build_command, tiny)
    run_tiny(tmp_path)
    tiny.write_text(TINY.replace("return (int)(x * 2);", "if (x > 100) return 0; return (int)(x * 2);"))
    monkeypatch.setenv("TRACEMESH_PGO", "use")
    with pytest.raises(CompileError):
        built(build_command, tiny)
    assert "Werror=coverage-mismatch" in capfd.readouterr().err  # gcc's, for tiny_twice: an error by default


def test_use_without_counts_stops_and_says_how_to_make_them(tiny: Path, build_command: Build,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEMESH_PGO", "use")
    with pytest.raises(SystemExit) as stopped:
        built(build_command, tiny)
    message = str(stopped.value)
    assert "TRACEMESH_PGO=use but tiny has no counts" in message
    assert "TRACEMESH_PGO=generate" in message and "python -m bench.pgo_training" in message


def test_generate_starts_from_no_counts(tiny: Path, build_command: Build, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "pgo-objects" / "old" / "module.gcda"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"counts of an older build")
    monkeypatch.setenv("TRACEMESH_PGO", "generate")
    built(build_command, tiny)
    assert not stale.exists()


def test_an_unknown_mode_is_refused_with_the_ones_there_are(tiny: Path, build_command: Build,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEMESH_PGO", "yes")
    with pytest.raises(SystemExit) as stopped:
        built(build_command, tiny)
    assert str(stopped.value).startswith("TRACEMESH_PGO='yes': use generate")


@pytest.mark.parametrize("mode", ["generate", "use", None])
def test_the_manifest_records_how_the_c_was_optimized(setup_module: ModuleType, mode: str | None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if mode is None:
        monkeypatch.delenv("TRACEMESH_PGO", raising=False)
    else:
        monkeypatch.setenv("TRACEMESH_PGO", mode)
    setup_module.write_manifest([])
    manifest = json.loads((setup_module.PACKAGE / setup_module.MANIFEST).read_text())
    assert manifest == ({} if mode is None else {setup_module.BUILD.PROFILE_KEY: setup_module.BUILD.PROFILES[mode]})
