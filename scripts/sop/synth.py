"""Synthetic request files: N valid, varied requests for tests and benchmarks.

``generate(500, folder)`` writes ``folder/<label>.yml`` for 500 made-up
agencies. The set is deterministic (the same ``n`` gives the same files) and
valid as one set under the contract and under the tightest policy of the
repository's inventories (lab: mailbox 2G, hosting 5G, agency 10G), with the
mix a real regency would have: agencies, public services and events (with an
end date), mail-only and web-only requests, subdomain and parent mail domains,
aliases to mailboxes and to outside addresses.

Run ``python -m sop.synth N FOLDER`` to write a set from the shell.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import yaml

# (label prefix, name of the kind of agency, abbreviation prefix)
_KINDS = [
    ("dinas", "Dinas", "DIN"),
    ("badan", "Badan", "BDN"),
    ("kec", "Kecamatan", "KEC"),
    ("desa", "Desa", "DESA"),
    ("puskesmas", "Puskesmas", "PKM"),
    ("uptd", "UPTD", "UPTD"),
    ("rsud", "Rumah Sakit Umum Daerah", "RSUD"),
    ("festival", "Panitia Festival", "FEST"),
]
_PLACES = ["Tambolaka", "Waitabula", "Kodi", "Wewewa", "Loura", "Kota Tambolaka", "Wee Pangali",
           "Kodi Utara", "Wewewa Barat", "Kodi Bangedo"]
_PEOPLE = ["Maria Ngongo", "Yohanes Bili", "Agustina Kaka", "Yakobus Dairo", "Paulus Lende",
           "Elisabeth Tanggu", "Markus Malo", "Kristina Dede", "Fransiskus Bora", "Veronika Lero",
           "dr. Yosef Kaleka, M.Kes", "Theresia Bulu, S.Sos"]
_POSITIONS = ["Kepala Sub Bagian Umum", "Sekretaris", "Kepala Seksi Data dan Informasi",
              "Pranata Komputer", "Kepala Bidang Pelayanan"]
_BOXES = ["admin", "kepala", "sekretariat", "umum", "keuangan", "humas"]
_MONTHS = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X"]
_FIRST_LETTER = datetime.date(2025, 1, 6)


def _label(index: int) -> tuple[str, str, str]:
    """Label, agency name and abbreviation of request number ``index``."""
    prefix, kind, abbr = _KINDS[index % len(_KINDS)]
    place = _PLACES[index // len(_KINDS) % len(_PLACES)]
    number = index + 1
    return f"{prefix}-{number:04d}", f"{kind} {place} {number}", f"{abbr}{number}"


def request(index: int) -> dict:
    """The request number ``index`` (0-based) of a synthetic set, as plain data."""
    label, name, abbreviation = _label(index)
    person = _PEOPLE[index % len(_PEOPLE)]
    position = _POSITIONS[index % len(_POSITIONS)]
    # In the past whatever the clock says: 2025 and early 2026 only.
    date = _FIRST_LETTER + datetime.timedelta(days=index % 400)
    kind = "kegiatan" if label.startswith("festival") else (
        "layanan_publik" if index % 7 == 3 else "instansi")
    agency: dict = {"name": name, "abbreviation": abbreviation, "category": kind}
    if kind == "kegiatan":
        agency["ends"] = date.replace(year=date.year + 1)
    doc: dict = {
        "letter": {
            "number": f"000.1/{index + 1}/{abbreviation}/{_MONTHS[index % 10]}/{date.year}",
            "date": date,
            "subject": "Permohonan pembuatan subdomain dan email dinas",
        },
        "agency": agency,
        "contact": {
            "name": person,
            "nip": (f"{1970 + index % 30}{index % 12 + 1:02d}{index % 28 + 1:02d}"
                    f"{2000 + index % 20}{index % 12 + 1:02d}{1 + index % 2}{index % 1000:03d}"),
            "position": position,
            "phone": f"+62 81{index % 10}-{index % 10000:04d}-{index * 7 % 10000:04d}",
        },
        "subdomain": label,
    }
    if index % 9 != 4:  # every ninth is mail-only
        doc["hosting"] = {"quota": ["256M", "512M", "1G", "2G"][index % 4]}
    if index % 11 != 5 or "hosting" not in doc:  # every eleventh is web-only
        doc["mail"] = _mail(index, label, person, position)
    return doc


def _mail(index: int, label: str, person: str, position: str) -> dict:
    parent = index % 25 == 12  # a few use @<zone>: local parts then unique regency-wide
    count = 1 + index % 4
    names = [f"{box}.{label}" if parent else box for box in _BOXES[:count]]
    boxes = []
    for number, local_part in enumerate(names):
        box = {"local_part": local_part,
               "holder": person if number == 0 else _PEOPLE[(index + number) % len(_PEOPLE)]}
        if number == 0:
            box["position"] = position
        box["quota"] = ["256M", "512M", "1G"][(index + number) % 3]
        boxes.append(box)
    mail: dict = {"domain": "parent" if parent else "subdomain", "mailboxes": boxes}
    if index % 3 == 0:
        info = f"info.{label}" if parent else "info"
        targets = [names[0]] + ([f"arsip.{label}@gmail.com"] if index % 2 else [])
        mail["aliases"] = [{"local_part": info, "to": targets}]
    return mail


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as yamllint's default style wants."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def render(doc: dict) -> str:
    """A request as YAML text."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def generate(n: int, out_dir: str | Path) -> list[Path]:
    """Write ``n`` valid synthetic requests into ``out_dir`` (created); return their paths.

    Existing files of the same names are replaced; other files are left alone.
    """
    if n < 0 or n > 9999:
        raise ValueError("n must be between 0 and 9999")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n):
        doc = request(index)
        path = folder / f"{doc['subdomain']}.yml"
        path.write_text("# Synthetic request made by sop.synth (not a real agency).\n"
                        + render(doc), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[0].isdigit():
        print("usage: python -m sop.synth N FOLDER", file=sys.stderr)
        return 2
    paths = generate(int(args[0]), args[1])
    print(f"{len(paths)} synthetic request(s) written to {args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
