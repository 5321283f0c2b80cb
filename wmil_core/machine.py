"""What machine a benchmark ran on, and whether its CPU multiplies bfloat16 natively.

Speed numbers depend on the processor far more than on anything else: the same bfloat16
matrix product ran at 1385 GFLOP/s on a CPU with AMX and at about 1 GFLOP/s (emulated) on an
AVX2-only one (docs/iqmpc-speed.md, docs/runtime-speed.md). Every benchmark JSON therefore
records :func:`machine_info`.
Importing this module does not import torch (the runtime's benchmark uses it too).
"""
from __future__ import annotations

import os
import platform
import sys
from typing import Any


def _cpuinfo_field(keys: tuple[str, ...], cpuinfo: str) -> str | None:
    """The first non-empty value of one of ``keys`` in ``/proc/cpuinfo`` (None: absent)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() in keys and value.strip():
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The processor's model name (Linux: ``/proc/cpuinfo``), else what ``platform`` knows."""
    return (_cpuinfo_field(("model name",), cpuinfo) or platform.processor()
            or platform.machine() or "unknown")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The instruction-set flags the kernel reports for the first processor (empty elsewhere)."""
    return frozenset((_cpuinfo_field(("flags", "Features"), cpuinfo) or "").split())


def int8_saturates(flags: frozenset[str] | None = None) -> bool:
    """True on an x86 CPU without VNNI (AVX2, AVX-512F): onnxruntime's uint8 x int8 products
    add pairs in 16 bits there and can saturate with full 8-bit weights (the reason for
    ``wmil quantize``'s reduced range). False where the flags are unknown or VNNI is present."""
    flags = cpu_flags() if flags is None else flags
    x86 = "avx2" in flags or "sse4_2" in flags
    return x86 and not ({"avx512_vnni", "avx_vnni", "avx_vnni_int8"} & flags)


def torch_cpu_features() -> dict[str, Any]:
    """The CPU kernels torch dispatches to, and the bfloat16/int8 units it can use."""
    import torch

    feats: dict[str, Any] = {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
    # private probes of torch.cpu (present in torch 2.13); absent ones are left out
    for key, probe in (("amx", "_is_amx_tile_supported"),
                       ("avx512_bf16", "_is_avx512_bf16_supported"),
                       ("vnni", "_is_vnni_supported")):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None:
            feats[key] = bool(fn())
    return feats


def native_bfloat16_matmul() -> bool:
    """True when this CPU multiplies bfloat16 in hardware (AMX or AVX512-BF16)."""
    feats = torch_cpu_features()
    return bool(feats.get("amx") or feats.get("avx512_bf16"))


def machine_info() -> dict[str, Any]:
    """Architecture, processor model and core count; torch's CPU features if torch is loaded."""
    info: dict[str, Any] = {"machine": platform.machine(), "cpu": cpu_model(),
                            "cores": os.cpu_count()}
    if "torch" in sys.modules:
        info.update(torch_cpu_features())
    return info
