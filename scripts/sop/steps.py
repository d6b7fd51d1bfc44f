"""The SOP's steps as the official document gives them (sop-original-id.txt)."""

from __future__ import annotations

import re
from collections.abc import Mapping
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


# ---------------------------------------------------------------------------
# The steps of one run, as the run record and the report list them
# ---------------------------------------------------------------------------

HANDOVER_STEP = 9
_NOT_RUN = "Tidak dijalankan karena langkah sebelumnya gagal."


def _names(labels: list[str], limit: int = 5) -> str:
    if len(labels) <= limit:
        return ", ".join(labels)
    return f"{len(labels)} permohonan"


def origin_text(origins: Mapping | None) -> str:
    """Step 1: what is known of where the requests came from, nothing more."""
    if not origins:
        return "Asal permohonan tidak tercatat."
    if origins.get("lab"):
        return "Proses lab: permohonan contoh, tanpa surat permohonan dan disposisi."
    entries = origins.get("requests") or {}
    if not entries:
        return "Tidak ada permohonan."
    if not origins.get("git"):
        return "Asal berkas permohonan tidak diketahui (salinan tanpa riwayat git)."
    by_commit: dict[tuple, list[str]] = {}
    changed = []
    for label, entry in sorted(entries.items()):
        if entry.get("changed"):
            changed.append(label)
        else:
            by_commit.setdefault((entry["date"] or "", entry["commit"]), []).append(label)
    parts = [f"{_names(labels)}: commit {commit} ({day})"
             for (day, commit), labels in sorted(by_commit.items(), reverse=True)]
    text = "Berkas permohonan masuk melalui " + "; ".join(parts) + "." if parts else ""
    if changed:
        text += (" " if text else "") + (
            f"Belum di-commit atau diubah sesudah commit terakhir: {_names(changed)} "
            "(tidak tercatat persetujuannya).")
    return text


def run_steps(seconds: Mapping[int, float], failed: set[int], *, ok: bool, check: bool,
              printouts: int, requests: int, new: int, origins: Mapping | None) -> list[dict]:
    """Rows for SOP steps 1-9 of one run (step 9, the handover, is done by hand)."""
    rows = []
    for n in range(1, HANDOVER_STEP):
        took = seconds.get(n)
        status = "failed" if n in failed else "skipped" if took is None else "ok"
        detail = ""
        if n == 1:
            detail = origin_text(origins)
        elif n == 2:
            detail = f"{requests} permohonan divalidasi ({new} baru) dan diproses pada proses ini."
        elif n == 7:
            detail = f"{printouts} dokumen cetak dibuat."
        rows.append(_row(n, took or 0.0, "skipped" if (check and n in (7, 8)) else status,
                         detail))
    handover = ("Dilakukan petugas saat dokumen cetak diserahkan (berita acara serah terima)."
                if printouts else "Tidak ada dokumen cetak baru pada proses ini; dokumen yang "
                "menunggu `sop print` diserahkan kemudian.")
    rows.append(_row(HANDOVER_STEP, None, "manual" if printouts and not check else "skipped",
                     handover))
    if not ok:
        for row in rows:
            if row["status"] == "skipped" and row["number"] > 2:
                row["detail"] = _NOT_RUN
    return rows


def _row(n: int, seconds: float | None, status: str, detail: str) -> dict:
    return {
        "number": n,
        "name": STEPS[n].name,
        "standard_minutes": STEPS[n].standard_minutes,
        "seconds": None if seconds is None else round(seconds, 2),
        "status": status,
        "output": STEPS[n].output,
        "detail": detail,
    }
