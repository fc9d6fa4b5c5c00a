"""The CPU an evaluation ran on, as onnxruntime's kernel dispatch sees it.

int8 results can differ between CPUs: onnxruntime picks its uint8×int8 kernels by CPUID
(AVX2, AVX-VNNI, AVX-512 VNNI, AMX). The features are read with the CPUID instruction itself,
not /proc/cpuinfo, because under an emulator (qemu-user) /proc/cpuinfo describes the host while
CPUID describes the CPU being emulated, which is the one onnxruntime dispatches on.
"""
from __future__ import annotations

import ctypes
import mmap
import platform
from functools import cache

# x86-64 System V: cpuid(leaf=edi, subleaf=esi, out=rdx) stores eax, ebx, ecx, edx in out[0..3].
_CPUID = bytes.fromhex("53" "89f8" "89f1" "4989d0" "0fa2" "418900" "41895804" "41894808" "4189500c" "5b" "c3")
# xgetbv(ecx=edi) returns edx:eax, the register state the OS saves (AVX-512 needs bits 5-7).
_XGETBV = bytes.fromhex("89f9" "0f01d0" "48c1e220" "4809d0" "c3")

# (name, leaf, subleaf, register index (eax, ebx, ecx, edx), bit)
FLAGS = (
    ("avx2", 7, 0, 1, 5),
    ("avx512f", 7, 0, 1, 16),
    ("avx512bw", 7, 0, 1, 30),
    ("avx512_vnni", 7, 0, 2, 11),
    ("avx_vnni", 7, 1, 0, 4),
    ("amx_int8", 7, 0, 3, 25),
)
# The flags that choose onnxruntime's int8 kernels (what a model card names).
INT8_KERNEL_FLAGS = ("avx2", "avx512_vnni", "avx_vnni", "amx_int8")


def hardware() -> dict[str, str]:
    """CPU model, the int8-relevant CPUID flags ("yes"/"no") and the onnxruntime version."""
    import onnxruntime  # noqa: PLC0415

    info = {"machine": platform.machine(), "onnxruntime": onnxruntime.__version__}
    try:
        info |= _x86()
    except (OSError, ValueError, NotImplementedError) as exc:  # not x86-64, or no executable memory
        info["cpu"] = platform.processor() or "unknown"
        info["cpuid"] = f"unavailable ({exc})"
    return info


@cache
def _x86() -> dict[str, str]:
    if platform.machine() not in ("x86_64", "AMD64"):
        raise NotImplementedError(platform.machine())
    with _Code(_CPUID) as cpuid, _Code(_XGETBV) as xgetbv:
        out = (ctypes.c_uint32 * 4)()

        def regs(leaf: int, subleaf: int = 0) -> tuple[int, ...]:
            ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p)(cpuid)(leaf, subleaf, ctypes.addressof(out))
            return tuple(out)

        max_leaf, max_ext = regs(0)[0], regs(0x80000000)[0]
        brand = b"".join(b"".join(r.to_bytes(4, "little") for r in regs(leaf)) for leaf in range(0x80000002, 0x80000005)) \
            if max_ext >= 0x80000004 else b""
        info = {"cpu": brand.rstrip(b"\0").decode(errors="replace").strip() or "unknown"}
        for name, leaf, subleaf, register, bit in FLAGS:
            info[name] = "yes" if leaf <= max_leaf and regs(leaf, subleaf)[register] >> bit & 1 else "no"
        if regs(1)[2] >> 27 & 1:  # OSXSAVE: the OS reports which register state it saves
            xcr0 = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint32)(xgetbv)(0)
            info["os_saves_avx512_state"] = "yes" if xcr0 & 0xE0 == 0xE0 else "no"
    return info


class _Code:
    """A few bytes of machine code in an executable page, callable through ctypes."""

    def __init__(self, code: bytes):
        self._page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._page.write(code)

    def __enter__(self) -> int:
        self._anchor = ctypes.c_char.from_buffer(self._page)
        return ctypes.addressof(self._anchor)

    def __exit__(self, *exc) -> None:
        del self._anchor  # the buffer export must go before the page can close
        self._page.close()
