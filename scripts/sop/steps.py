"""The SOP's steps as the official document gives them (sop-original-id.txt)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    number: int
    name: str  # Bahasa Indonesia, as in the SOP
    standard_minutes: int
    output: str


STEPS: dict[int, Step] = {
    s.number: s
    for s in (
        Step(1, "Disposisi surat permohonan subdomain dan email", 15, "Disposisi"),
        Step(2, "Penjadwalan pemrosesan pembuatan subdomain dan email", 15, "Jadwal"),
        Step(3, "Memastikan ketersediaan ruang penyimpanan pada server subdomain dan email",
             15, "Data ruang penyimpanan server"),
        Step(4, "Pembuatan akun subdomain dan email sesuai dokumen permohonan", 30,
             "Akun subdomain dan email"),
        Step(5, "Pencatatan username dan password akun ke dalam pendataan", 10,
             "Data akun subdomain dan email"),
        Step(6, "Penambahan nama subdomain dan email ke dalam Domain Name Server", 15,
             "Penamaan subdomain dan email"),
        Step(7, "Pencetakan data username dan password", 10,
             "Dokumen cetak data akun subdomain dan email"),
        Step(8, "Pelaporan hasil proses pembuatan subdomain dan email", 10, "Laporan"),
        Step(9, "Penyerahan hasil kepada pengelola / admin instansi", 15,
             "Hasil proses pembuatan subdomain dan email"),
    )
}

_PLAY_STEP = re.compile(r"SOP steps? (\d+)(?:-(\d+))?")


def steps_of_play(play_name: str) -> list[int]:
    """SOP step numbers a play names ("SOP step 4: ..." or "SOP steps 1-2: ...")."""
    match = _PLAY_STEP.search(play_name or "")
    if not match:
        return []
    first = int(match.group(1))
    last = int(match.group(2) or first)
    return list(range(first, last + 1))
