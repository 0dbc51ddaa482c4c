"""Kernel choices that depend on the processor, measured on the machine at hand.

Some fast kernels pay on one CPU and not on another of the same kind: the
oneDNN linear product (:mod:`accel.linear`) was 1.6-1.7 x faster than MKL's
GEMM on one 2-core AMD EPYC and level with it (1.00 x) on another, with
AVX-512, where at inference (batch 1) oneDNN's fused linear layers were even
slower than the library's. Such a choice is made by a short measurement (well under a second)
the first time it is needed, and cached per processor, torch version and
thread count in ``$GASMONO_CACHE_DIR/kernel_choices.json`` (default
``~/.cache/gasmono``), so that later runs on the machine make the same
choice without measuring. ``--deterministic`` runs never measure: they take
the library's kernel, whose choice no timing can change.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from accel.linear import Conv1x1Linear
from utils import atomic_write_text, cpu_fields

__all__ = ["CACHE_ENV", "LINEAR_SHAPES", "machine_key", "cache_path", "faster_by_measurement",
           "measure_linear_products", "onednn_linear_pays", "measure_fused_encoder", "onednn_inference_pays"]

logger = logging.getLogger(__name__)

CACHE_ENV = "GASMONO_CACHE_DIR"
# a fast kernel is chosen when it takes at most this fraction of the library's time
REQUIRED_GAIN = 0.95
# (rows, in, out) of MPViT-small's linear layers at 256 x 320, batch 2 (benchmarks/bench_linear.py)
LINEAR_SHAPES = ((10240, 64, 192), (10240, 64, 256), (10240, 256, 64), (2560, 128, 384), (2560, 128, 512),
                 (2560, 512, 128), (640, 216, 648), (640, 216, 864), (640, 864, 216))


def _cpu_description() -> str:
    """The CPU's identity and the instruction-set flags that decide MKL's and oneDNN's code paths."""
    fields = cpu_fields()
    ident = " ".join(f"{key}={fields[key]}" for key in ("model name", "cpu family", "model", "stepping")
                     if key in fields) or platform.processor() or platform.machine()
    isa = sorted(flag for flag in fields.get("flags", "").split() if flag.startswith(("avx", "amx", "fma", "sse4")))
    return f"{ident} [{' '.join(isa)}]"


def machine_key() -> str:
    """What a measured choice holds for: the CPU, the torch version and its thread count."""
    cpu = hashlib.sha1(_cpu_description().encode()).hexdigest()[:12]
    return f"cpu-{cpu}/torch-{torch.__version__}/threads-{torch.get_num_threads()}"


def cache_path() -> Path:
    """``$GASMONO_CACHE_DIR/kernel_choices.json`` (default ``~/.cache/gasmono``)."""
    folder = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "gasmono"
    return Path(folder) / "kernel_choices.json"


def _read_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def faster_by_measurement(name: str, measure: Callable[[], tuple[float, float]]) -> bool:
    """Whether the fast kernel ``name`` beats the library's here: the cached verdict
    for :func:`machine_key`, else ``measure() -> (library seconds, fast seconds)``,
    cached (a cache that cannot be written is skipped with a debug message)."""
    path, key = cache_path(), machine_key()
    cache = _read_cache(path)
    entry = cache.get(key, {}).get(name)
    if entry is not None:
        return bool(entry["fast"])
    library_time, fast_time = measure()
    fast = fast_time <= REQUIRED_GAIN * library_time
    logger.info("measured %s: library %.1f ms, fast %.1f ms -> %s (cached in %s)", name, 1e3 * library_time,
                1e3 * fast_time, "fast" if fast else "library", path)
    cache.setdefault(key, {})[name] = {"fast": fast, "library_ms": round(1e3 * library_time, 3),
                                       "fast_ms": round(1e3 * fast_time, 3), "cpu": _cpu_description()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(cache, indent=1), path)
    except OSError as error:
        logger.debug("kernel choices not cached (%s)", error)
    return fast


def measure_linear_products(rounds: int = 3) -> tuple[float, float]:
    """Seconds of the encoder's linear shapes, forward and backward, with ``nn.Linear``
    and with :class:`accel.linear.Conv1x1Linear`: the best of ``rounds`` alternating rounds."""
    generator = torch.Generator().manual_seed(0)
    cases = []
    for rows, in_features, out_features in LINEAR_SHAPES:
        layer = nn.Linear(in_features, out_features)
        x = torch.randn(rows, in_features, generator=generator, requires_grad=True)
        cases.append((layer, x, torch.randn(rows, out_features, generator=generator)))
    times = {nn.Linear: [], Conv1x1Linear: []}
    for _ in range(rounds + 1):  # the first round warms up
        for cls in times:
            start = time.perf_counter()
            for layer, x, grad in cases:
                layer.__class__ = cls
                torch.autograd.backward(layer(x), grad)
            times[cls].append(time.perf_counter() - start)
    return min(times[nn.Linear][1:]), min(times[Conv1x1Linear][1:])


def onednn_linear_pays() -> bool:
    """Whether :class:`accel.linear.Conv1x1Linear` is faster than ``nn.Linear`` on this CPU."""
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    return faster_by_measurement("onednn_linear", measure_linear_products)


def measure_fused_encoder(rounds: int = 3, height: int = 256, width: int = 320) -> tuple[float, float]:
    """Seconds of one batch-1 inference of a fused MPViT-small encoder at ``height x width``
    with the library's linear layers and 1 x 1 convolutions, and with oneDNN's
    (:func:`accel.fusion.fuse_for_inference`): the best of ``rounds`` alternating rounds."""
    from accel.fusion import fuse_for_inference
    from networks import mpvit_small

    generator = torch.Generator().manual_seed(0)
    encoder = mpvit_small().eval()
    encoders = {onednn: fuse_for_inference(encoder, onednn) for onednn in (False, True)}
    image = torch.rand(1, 3, height, width, generator=generator).contiguous(memory_format=torch.channels_last)
    times: dict[bool, list[float]] = {False: [], True: []}
    with torch.inference_mode():
        for _ in range(rounds + 1):  # the first round warms up
            for onednn, fused in encoders.items():
                start = time.perf_counter()
                fused(image)
                times[onednn].append(time.perf_counter() - start)
    return min(times[False][1:]), min(times[True][1:])


def onednn_inference_pays() -> bool:
    """Whether the fused networks run faster with oneDNN's linear layers and 1 x 1 convolutions here."""
    if not torch.backends.mkldnn.is_available():
        return False
    return faster_by_measurement("onednn_inference", measure_fused_encoder)
