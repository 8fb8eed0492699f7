"""jaxcnn.host_memory: XLA:CPU's freed buffers stay mapped, so a compiled step stops page-faulting."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxcnn import host_memory

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, ""),
        ({"PATH": "/bin", "GLIBC_TUNABLES": "glibc.rtld.nns=2"}, ""),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "GLIBC_TUNABLES"),
        ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "LD_PRELOAD"),
        ({"LD_PRELOAD": "libfakeroot.so"}, ""),
        ({"LD_PRELOAD": "libtcmalloc_minimal.so.4"}, "LD_PRELOAD"),
        ({"MALLOC_ARENA_MAX": "4"}, "MALLOC_ARENA_MAX"),
        ({"MALLOC_MMAP_THRESHOLD_": "65536"}, "MALLOC_MMAP_THRESHOLD_"),
    ],
)
def test_user_malloc_setting_names_the_users_own_choice(environ, expected):
    assert host_memory.user_malloc_setting(environ) == expected


def test_a_users_malloc_setting_is_left_alone():
    assert host_memory.keep_freed_memory({"MALLOC_ARENA_MAX": "4"}) == "left to MALLOC_ARENA_MAX"
    assert host_memory.keep_freed_memory({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}) == "left to GLIBC_TUNABLES"


FAULTS_SCRIPT = """
import json, resource, statistics, sys
import jax, jax.numpy as jnp
from jaxcnn import host_memory
status = host_memory.keep_freed_memory({}) if sys.argv[1] == "kept" else "default"
# sin(x) is a 64 MiB temporary that XLA:CPU allocates and frees on every call
f = jax.jit(lambda x, y: jnp.sin(x) @ y)
x, y = jnp.ones((4096, 4096), jnp.float32), jnp.ones((4096, 8), jnp.float32)
assert f.lower(x, y).compile().memory_analysis().temp_size_in_bytes >= 64 * 2**20
for _ in range(20):
    f(x, y).block_until_ready()
faults = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x, y).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"status": status, "faults": statistics.median(faults)}))
"""


def _faults_per_call(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(FAULTS_SCRIPT), mode], capture_output=True,
                          text=True, cwd=REPO, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(host_memory.glibc_mallopt() is None, reason="mallopt is glibc's")
def test_kept_memory_stops_a_compiled_functions_page_faults():
    """By default every call maps its 64 MiB temporary afresh (16,384 faults of 4 KiB pages); kept, it reuses it."""
    default, kept = _faults_per_call("default"), _faults_per_call("kept")
    assert kept["status"] == host_memory.KEPT
    assert default["faults"] >= 16, default  # at least one fault per 4 MiB, even with transparent huge pages
    assert kept["faults"] * 100 <= default["faults"], (default, kept)
