"""What a backend can run on a CPU, per precision: native, emulated or unavailable.

Each backend declares its table beside its class; the parent reads it before any worker starts,
from the ISA flags every result's machine block records (`bench.machine.ISA_FLAGS`), so an old
result is read the same way. The CPU classes the tool is right on, from the flags:

- `amx`: AMX tiles (Sapphire, Emerald, Granite Rapids);
- `avx512_bf16`: AVX512_BF16 without AMX (Cooper Lake, AMD Zen 4/5);
- `avx512`: AVX-512 without bf16 (Skylake, Cascade Lake, Ice Lake; VNNI int8 from Cascade Lake);
- `avx2`: AVX2 without AVX-512 (Haswell/Broadwell, AMD Zen 2/3).

`native`: the precision runs on instructions made for it, and is measured. `emulated`: it runs,
but in fp32 arithmetic on converted data, so it measures no hardware of that precision: the
planner skips it (tests may run it, to check what it computes). `unavailable`: the runtime cannot
run it here — it aborts, or silently runs another precision — so it is always skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

NATIVE, EMULATED, UNAVAILABLE, UNKNOWN = "native", "emulated", "unavailable", "unknown"
CLASSES = {
    "amx": "AMX (Sapphire/Emerald/Granite Rapids)",
    "avx512_bf16": "AVX512_BF16, no AMX (Cooper Lake, Zen 4/5)",
    "avx512": "AVX-512 without bf16 (Skylake, Cascade Lake, Ice Lake)",
    "avx2": "AVX2 without AVX-512 (Haswell/Broadwell, Zen 2/3)",
}
WHERE_NATIVE = {"bf16": "a CPU with AVX512_BF16 or AMX (Cooper Lake, Zen 4/5, Sapphire Rapids)"}


@dataclass(frozen=True)
class Support:
    level: str  # NATIVE, EMULATED, UNAVAILABLE or UNKNOWN
    isa: str  # the instructions it runs on, as a label ("AVX2, no VNNI")
    how: str  # what runs, or why it cannot


Table = Mapping[str, Support]  # CPU class (and "avx512_vnni", refining "avx512") → support


def cpu_class(isa: Mapping[str, bool]) -> str | None:
    """The class of a machine block's ISA flags; None where no flag is known (not x86, or
    /proc/cpuinfo unreadable)."""
    if isa.get("amx_bf16") or isa.get("amx_tile"):
        return "amx"
    if isa.get("avx512_bf16"):
        return "avx512_bf16"
    if isa.get("avx512f"):
        return "avx512"
    if isa.get("avx2"):
        return "avx2"
    return None


def class_label(isa: Mapping[str, bool]) -> str:
    found = cpu_class(isa)
    return CLASSES[found] if found else "ISA unknown"


def on(table: Table, isa: Mapping[str, bool]) -> Support:
    """What `table` says for a CPU with these flags."""
    found = cpu_class(isa)
    if found is None:
        return Support(UNKNOWN, "unknown", "the CPU's ISA flags are unknown: the run goes ahead "
                                           "and what it obtained is checked")
    if found == "avx512" and isa.get("avx512_vnni") and "avx512_vnni" in table:
        return table["avx512_vnni"]
    return table[found]


FP32: Table = {
    "amx": Support(NATIVE, "AVX-512", "fp32 on AVX-512 FMA (AMX has no fp32)"),
    "avx512_bf16": Support(NATIVE, "AVX-512", "fp32 on AVX-512 FMA"),
    "avx512": Support(NATIVE, "AVX-512", "fp32 on AVX-512 FMA"),
    "avx2": Support(NATIVE, "AVX2", "fp32 on AVX2 FMA"),
}


def bf16(avx512: str, avx2: Support) -> Table:
    """A oneDNN-based runtime's bf16: native on AMX and AVX512_BF16, emulated on AVX-512 (`how`
    it emulates), and on AVX2 what the runtime does."""
    return {
        "amx": Support(NATIVE, "AMX-BF16", "bf16 on AMX tiles"),
        "avx512_bf16": Support(NATIVE, "AVX512_BF16", "bf16 dot products (vdpbf16ps)"),
        "avx512": Support(EMULATED, "AVX-512, no bf16", avx512),
        "avx2": avx2,
    }


# oneDNN's int8 convolutions (OpenVINO's CPU plugin): u8 x s8 products on every class, through
# AMX tiles, VNNI's vpdpbusd, or vpmaddubsw + vpmaddwd where there is no VNNI.
INT8: Table = {
    "amx": Support(NATIVE, "AMX-INT8", "int8 on AMX tiles"),
    "avx512_bf16": Support(NATIVE, "AVX-512 VNNI", "int8 dot products (vpdpbusd)"),
    "avx512_vnni": Support(NATIVE, "AVX-512 VNNI", "int8 dot products (vpdpbusd)"),
    "avx512": Support(NATIVE, "AVX-512, no VNNI",
                      "int8 through vpmaddubsw + vpmaddwd (no VNNI: about half VNNI's rate)"),
    "avx2": Support(NATIVE, "AVX2, no VNNI",
                    "int8 through 256-bit vpmaddubsw + vpmaddwd (no VNNI, no AVX-512)"),
}
