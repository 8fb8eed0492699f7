"""jaxcnn.host_memory: programs re-execute onto tcmalloc, and a compiled step then stops page-faulting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxcnn import host_memory

REPO = Path(__file__).resolve().parents[1]
LIBRARY = "libtcmalloc_minimal.so.4"
needs_tcmalloc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or host_memory.find_tcmalloc() is None,
    reason="tcmalloc is not installed (Debian: libtcmalloc-minimal4, which make installs)",
)


@pytest.mark.parametrize(
    "environ",
    [
        {"JAXCNN_MALLOC": "system"},  # the user's choice
        {"JAXCNN_MALLOC": "tcmalloc_minimal", "LD_PRELOAD": LIBRARY},  # already re-executed
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},  # the user's own allocator
    ],
)
def test_preload_environment_leaves_a_chosen_allocator_alone(environ):
    assert host_memory.preload_environment(environ, LIBRARY) is None


def test_preload_environment_puts_tcmalloc_first_and_marks_the_process():
    assert host_memory.preload_environment({"PATH": "/bin"}, None) is None  # not installed
    env = host_memory.preload_environment({"PATH": "/bin", "LD_PRELOAD": "libfakeroot.so"}, LIBRARY)
    assert env is not None
    assert env["LD_PRELOAD"] == f"{LIBRARY} libfakeroot.so" and env["PATH"] == "/bin"
    assert env[host_memory.MALLOC_VARIABLE] == host_memory.TCMALLOC
    assert host_memory.preload_environment(env, LIBRARY) is None  # so the re-executed process goes on
    mine = host_memory.preload_environment({"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": "1"}, LIBRARY)
    assert mine is not None and mine["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"] == "1"


def test_allocator_in_use_reads_the_mapped_libraries(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert host_memory.allocator_in_use(str(maps)) == "system"
    maps.write_text(f"7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/{LIBRARY}.5.10\n")
    assert host_memory.allocator_in_use(str(maps)) == "tcmalloc"
    assert host_memory.allocator_in_use(str(tmp_path / "absent")) == "unknown"


REEXEC_SCRIPT = """
import json, os, sys
from jaxcnn import host_memory
host_memory.run_on_tcmalloc()
print(json.dumps({"allocator": host_memory.allocator_in_use(), "argv": sys.argv[1:],
                  "marker": os.environ.get(host_memory.MALLOC_VARIABLE)}))
"""


def _run(script: str, *args: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", host_memory.MALLOC_VARIABLE)}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env={**environ, **env})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_tcmalloc
def test_run_on_tcmalloc_reexecutes_the_same_command_once():
    out = _run(REEXEC_SCRIPT, "train", "--epochs", "2")
    assert out == {"allocator": "tcmalloc", "argv": ["train", "--epochs", "2"], "marker": host_memory.TCMALLOC}
    assert _run(REEXEC_SCRIPT, JAXCNN_MALLOC="system")["allocator"] == "system"


FAULTS_SCRIPT = """
import json, resource, statistics
from jaxcnn import host_memory
host_memory.run_on_tcmalloc()
import jax, jax.numpy as jnp
# sin(x) is a 64 MiB temporary that XLA:CPU allocates and frees on every call
f = jax.jit(lambda x, y: jnp.sin(x) @ y)
x, y = jnp.ones((4096, 4096), jnp.float32), jnp.ones((4096, 8), jnp.float32)
assert f.lower(x, y).compile().memory_analysis().temp_size_in_bytes >= 64 * 2**20
for _ in range(10):
    f(x, y).block_until_ready()
faults = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x, y).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"allocator": host_memory.allocator_in_use(), "faults": statistics.median(faults)}))
"""


@needs_tcmalloc
def test_on_tcmalloc_a_compiled_function_stops_page_faulting():
    """On glibc's malloc every call maps its 64 MiB temporary afresh (16,384 faults of 4 KiB pages)."""
    system, tcmalloc = _run(FAULTS_SCRIPT, JAXCNN_MALLOC="system"), _run(FAULTS_SCRIPT)
    assert (system["allocator"], tcmalloc["allocator"]) == ("system", "tcmalloc")
    assert system["faults"] >= 16, system  # at least one fault per 4 MiB, even with transparent huge pages
    assert tcmalloc["faults"] * 100 <= system["faults"], (system, tcmalloc)
