"""Credential printout and run report (SOP steps 7, 8 and 9).

No root needed. The PDFs are read back with poppler's pdftotext, which is
installed on every machine that runs these tests.
"""

from __future__ import annotations

import copy
import json
import re
import stat
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from sop import documents, formatting
from sop.documents import (
    format_bytes_id,
    format_date_id,
    format_datetime_id,
    format_duration_id,
    render_printout,
    render_printout_html,
    render_report,
)
from sop.provenance import request_origins
from sop.steps import origin_text, run_steps

DOMAIN = "sumbabaratdayakab.go.id"
TODAY = date(2026, 11, 30)


def make_request() -> dict:
    fqdn = f"dinkes.{DOMAIN}"
    return {
        "file": "inventory/lab/requests/dinkes.yml",
        "subdomain": "dinkes",
        "fqdn": fqdn,
        "letter": {
            "number": "000.1/123/DINKES/XI/2026",
            "date": "2026-11-20",
            "subject": "Permohonan pembuatan subdomain dan email dinas",
        },
        "agency": {
            "name": "Dinas Kesehatan",
            "abbreviation": "DINKES",
            "category": "instansi",
            "ends": None,
        },
        "contact": {
            "name": "Maria Ngongo",
            "nip": "198501012010012001",
            "position": "Kepala Sub Bagian Umum",
            "phone": "+62 812-3456-7890",
        },
        "hosting": {"quota": "2G", "quota_bytes": 2147483648},
        "mail": {
            "domain": "subdomain",
            "address_domain": fqdn,
            "mailboxes": [
                {
                    "local_part": "admin",
                    "address": f"admin@{fqdn}",
                    "holder": "Maria Ngongo",
                    "position": None,
                    "quota": "1G",
                    "quota_bytes": 1073741824,
                },
                {
                    "local_part": "kepala.dinas",
                    "address": f"kepala.dinas@{fqdn}",
                    "holder": "dr. Yohanes Bili Kaka, M.Kes.",
                    "position": "Kepala Dinas Kesehatan",
                    "quota": "2G",
                    "quota_bytes": 2147483648,
                },
            ],
            "aliases": [
                {"local_part": "info", "address": f"info@{fqdn}", "to": [f"admin@{fqdn}"]},
            ],
        },
        "quota_bytes_total": 5368709120,
    }


def make_credentials() -> dict:
    fqdn = f"dinkes.{DOMAIN}"
    return {
        f"admin@{fqdn}": {
            "username": f"admin@{fqdn}",
            "password": "K7mP-x3Rt-9wQz-Hn4c",
            "created": "2026-11-30",
            "reprint": False,
        },
        f"kepala.dinas@{fqdn}": {
            "username": f"kepala.dinas@{fqdn}",
            "password": "Wq8n-Tz4k-M2xe-Ry7d-bP3h",
            "created": "2026-11-30",
            "reprint": False,
        },
        "hosting:dinkes": {
            "username": "w-dinkes",
            "password": "Pz3g-Nc8r-Xu4m-Ht7b",
            "created": "2026-11-30",
            "reprint": False,
        },
    }


def make_settings(**extra) -> dict:
    settings = {
        "letterhead": {
            "regency": "PEMERINTAH KABUPATEN SUMBA BARAT DAYA",
            "office": "DINAS KOMUNIKASI DAN INFORMATIKA",
            "division": "Bidang Layanan E-Government",
            "address": "Jl. Ranggaroko, Tambolaka, Sumba Barat Daya, Nusa Tenggara Timur",
            "phone": "(0387) 000000",
            "email": f"diskominfo@{DOMAIN}",
            "logo": None,
        },
        "administrator": {
            "name": "Yosef Ndara Lende, S.Kom.",
            "nip": "199003152015031002",
            "position": "Admin Sistem",
        },
        "mail_client": {
            "imap_host": f"mail.{DOMAIN}",
            "imap_port": 993,
            "imap_security": "SSL/TLS",
            "smtp_host": f"mail.{DOMAIN}",
            "smtp_port": 587,
            "smtp_security": "STARTTLS",
        },
        "sftp": {"host": f"web.{DOMAIN}", "port": 22},
        "web_scheme": "https",
        "templates_dir": None,
    }
    settings.update(extra)
    return settings


def make_run() -> dict:
    return {
        "run_id": "20261130T052100Z",
        "started": "2026-11-30T05:21:00+00:00",
        "finished": "2026-11-30T05:22:47+00:00",
        "controller": "ci-runner-01",
        "inventory": "inventory/lab",
        "status": "ok",
        "failure": None,
        "requests": [{"subdomain": "dinkes", "agency": "Dinas Kesehatan", "new": True}],
        "steps": [
            {
                "number": 3,
                "name": "Memastikan ketersediaan ruang penyimpanan",
                "standard_minutes": 15,
                "seconds": 2.4,
                "status": "ok",
                "output": "Data ruang penyimpanan server",
                "detail": "cukup | sisa 38,2 GiB",
            },
            {
                "number": 4,
                "name": "Membuat akun subdomain dan email",
                "standard_minutes": 30,
                "seconds": 65.2,
                "status": "ok",
                "output": "Akun subdomain dan email",
                "detail": None,
            },
            {
                "number": 6,
                "name": "Menambahkan nama ke Domain Name Server",
                "standard_minutes": 15,
                "seconds": 0.0,
                "status": "skipped",
                "output": "Penamaan subdomain dan email",
                "detail": None,
            },
        ],
        "storage": [
            {
                "host": "lab",
                "mount": "/",
                "paths": ["/var/mail/vhosts", "/srv/www"],
                "capacity_bytes": 53687091200,
                "free_bytes": 41016844288,
                "allocated_bytes": 9663676416,
                "reserve_percent": 15,
            }
        ],
        "postchecks": [
            {
                "subdomain": "dinkes",
                "check": "dns",
                "target": f"dinkes.{DOMAIN}",
                "ok": True,
                "detail": "A 127.0.0.1",
            },
            {
                "subdomain": "dinkes",
                "check": "imap",
                "target": f"admin@dinkes.{DOMAIN}",
                "ok": False,
                "detail": "login ditolak",
            },
        ],
        "notes": ["Catatan pertama.", "Catatan kedua."],
        "changed": {"lab": 12},
    }


def pdftotext(path: Path, first: int | None = None, last: int | None = None) -> str:
    cmd = ["pdftotext", "-layout"]
    if first is not None:
        cmd += ["-f", str(first)]
    if last is not None:
        cmd += ["-l", str(last)]
    cmd += [str(path), "-"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def pdf_pages(path: Path) -> int:
    info = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True, text=True)
    return int(re.search(r"^Pages:\s+(\d+)", info.stdout, re.M).group(1))


def assert_markdown_tables_are_rectangular(markdown: str) -> None:
    """Every row of each Markdown table has as many cells as its header."""
    width = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            width = None
            continue
        cells = len(re.split(r"(?<!\\)\|", line.strip())) - 2
        if width is None:
            width = cells
        assert cells == width, line


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0,0 detik"),
        (0.04, "0,0 detik"),
        (2.4, "2,4 detik"),
        (12.34, "12,3 detik"),
        (59.94, "59,9 detik"),
        (59.96, "1 menit"),
        (60, "1 menit"),
        (65, "1 menit 5 detik"),
        (65.4, "1 menit 5 detik"),
        (125.6, "2 menit 6 detik"),
        (3600, "1 jam"),
        (3605, "1 jam 5 detik"),
        (3725, "1 jam 2 menit 5 detik"),
    ],
)
def test_format_duration_id(seconds, expected):
    assert format_duration_id(seconds) == expected


@pytest.mark.parametrize("bad", [-1, float("nan")])
def test_format_duration_id_rejects_negative_and_nan(bad):
    with pytest.raises(ValueError):
        format_duration_id(bad)


def test_format_duration_id_rejects_non_numbers():
    with pytest.raises(TypeError):
        format_duration_id("12")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-20", "20 November 2026"),
        ("2026-01-01", "1 Januari 2026"),
        ("2026-02-28", "28 Februari 2026"),
        ("2026-03-05", "5 Maret 2026"),
        ("2026-05-17", "17 Mei 2026"),
        ("2026-06-09", "9 Juni 2026"),
        ("2026-07-09", "9 Juli 2026"),
        ("2026-08-17", "17 Agustus 2026"),
        ("2026-10-28", "28 Oktober 2026"),
        ("2026-12-31", "31 Desember 2026"),
        (date(2026, 4, 2), "2 April 2026"),
        (date(2026, 9, 30), "30 September 2026"),
        (datetime(2026, 11, 30, 5, 21, tzinfo=UTC), "30 November 2026"),
        ("2026-11-30T05:21:00+00:00", "30 November 2026"),
        ("2026-11-30T05:21:00Z", "30 November 2026"),
    ],
)
def test_format_date_id(value, expected):
    assert format_date_id(value) == expected


@pytest.mark.parametrize("bad", ["20-11-2026", "2026-13-01", "kemarin", ""])
def test_format_date_id_rejects_garbage(bad):
    with pytest.raises(ValueError):
        format_date_id(bad)


def test_format_datetime_id_shows_every_moment_in_wita():
    assert format_datetime_id("2026-11-30T05:21:00+00:00") == "30 November 2026 pukul 13.21.00 WITA"
    assert format_datetime_id("2026-11-30T13:21:00+08:00") == "30 November 2026 pukul 13.21.00 WITA"
    # WIB and WIT moments, and a naive one (the runner's UTC), all in WITA
    assert format_datetime_id("2026-11-30T12:21:00+07:00").endswith("13.21.00 WITA")
    assert format_datetime_id("2026-11-30T14:21:00+09:00").endswith("13.21.00 WITA")
    assert format_datetime_id(datetime(2026, 11, 30, 5, 21)).endswith("13.21.00 WITA")
    # past 16.00 UTC it is already the next day in the regency
    assert format_datetime_id("2026-11-30T17:30:00Z") == "1 Desember 2026 pukul 01.30.00 WITA"
    assert format_date_id("2026-11-30T17:30:00Z") == "1 Desember 2026"
    assert format_datetime_id(None) == "-"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1536, "1,5 KiB"),
        (536870912, "512,0 MiB"),
        (1073741824, "1,0 GiB"),
        (2147483648, "2,0 GiB"),
        (41016844288, "38,2 GiB"),
        (1099511627776, "1,0 TiB"),
        (None, "-"),
    ],
)
def test_format_bytes_id(value, expected):
    assert format_bytes_id(value) == expected


# ---------------------------------------------------------------------------
# Credential printout
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def printout(tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("printouts") / "printouts"
    return render_printout(
        make_request(), make_credentials(), make_settings(), out_dir, today=TODAY
    )


def test_printout_is_written_private(printout):
    assert printout.name == "dinkes.pdf"
    assert printout.read_bytes().startswith(b"%PDF-")
    assert stat.S_IMODE(printout.stat().st_mode) == 0o600
    assert stat.S_IMODE(printout.parent.stat().st_mode) & 0o077 == 0
    assert [p.name for p in printout.parent.iterdir()] == ["dinkes.pdf"]  # no temp file left


def test_printout_holds_every_account_and_password(printout):
    text = pdftotext(printout, 1, 1)
    for address, entry in make_credentials().items():
        if address.startswith("hosting:"):
            continue
        assert address in text
        assert entry["password"] in text  # grouped password comes through unbroken
    hosting = make_credentials()["hosting:dinkes"]
    assert hosting["username"] in text
    assert hosting["password"] in text
    assert f"info@dinkes.{DOMAIN}" in text  # alias listed, without a password
    assert "000.1/123/DINKES/XI/2026" in text
    assert "20 November 2026" in text
    assert f"https://dinkes.{DOMAIN}" in text
    assert "RAHASIA" in text
    assert "DATA AKUN SUBDOMAIN DAN EMAIL INSTANSI" in text
    assert f"mail.{DOMAIN}" in text and "993" in text and "587" in text
    assert "PEMERINTAH KABUPATEN SUMBA BARAT DAYA" in text
    assert "Halaman 1 dari 2" in text


def test_printout_page_two_is_the_handover_receipt(printout):
    assert pdf_pages(printout) == 2
    page2 = pdftotext(printout, 2, 2)
    assert "BERITA ACARA SERAH TERIMA" in page2
    assert "PIHAK PERTAMA" in page2 and "PIHAK KEDUA" in page2
    assert "Maria Ngongo" in page2 and "198501012010012001" in page2
    assert "Yosef Ndara Lende, S.Kom." in page2 and "199003152015031002" in page2
    assert f"kepala.dinas@dinkes.{DOMAIN}" in page2
    # dated by hand at the handover, not on the day of printing
    assert "Pada hari ini, ....." in page2 and "tanggal ....." in page2
    assert "Senin" not in page2
    assert "30 November 2026" not in page2.split("Dihasilkan oleh")[0]
    # the receipt lists the accounts but never their passwords
    for entry in make_credentials().values():
        assert entry["password"] not in page2
    assert "BERITA ACARA" not in pdftotext(printout, 1, 1)


def test_printout_html_escapes_request_text():
    request = make_request()
    request["agency"]["name"] = "Dinas <script>alert(1)</script> & Co"
    request["contact"]["name"] = '"Maria" <b>'
    html = render_printout_html(request, make_credentials(), make_settings(), today=TODAY)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html
    assert "<b>&#34;" not in html and "&#34;Maria&#34; &lt;b&gt;" in html


def test_printout_monospace_password_markup():
    html = render_printout_html(make_request(), make_credentials(), make_settings(), today=TODAY)
    assert '<span class="secret">K7mP-x3Rt-9wQz-Hn4c</span>' in html
    assert '<span class="secret">Pz3g-Nc8r-Xu4m-Ht7b</span>' in html


def test_printout_without_hosting_or_mail():
    request = make_request()
    request["hosting"] = None
    credentials = make_credentials()
    del credentials["hosting:dinkes"]
    html = render_printout_html(request, credentials, make_settings(), today=TODAY)
    assert "SFTP" not in html
    assert "K7mP-x3Rt-9wQz-Hn4c" in html

    request["mail"] = None
    html = render_printout_html(request, {}, make_settings(), today=TODAY)
    assert "K7mP" not in html and "IMAP" not in html
    assert "BERITA ACARA SERAH TERIMA" in html


def test_printout_gives_the_sites_database_host_name_user_and_password(tmp_path):
    request = make_request()
    request["hosting"] = {**request["hosting"], "database": True}
    credentials = make_credentials()
    credentials["database:dinkes"] = {"username": "w_dinkes", "password": "Db4x-Qw7m-Kt3n-Pa9c",
                                      "created": "2026-11-30", "reprint": False}
    path = render_printout(request, credentials, make_settings(), tmp_path / "out", today=TODAY)
    last = pdf_pages(path)  # the receipt; the sheet before it may take two pages
    page1, page2 = pdftotext(path, 1, last - 1), pdftotext(path, last, last)
    assert "BERITA ACARA SERAH TERIMA" in page2
    assert "Basis data (MariaDB)" in page1 and "w_dinkes" in page1 and "localhost" in page1
    assert "Db4x-Qw7m-Kt3n-Pa9c" in page1
    assert "w_dinkes" in page2 and "Db4x-Qw7m-Kt3n-Pa9c" not in page2  # the receipt: no password
    del credentials["database:dinkes"]
    with pytest.raises(ValueError, match="database:dinkes"):
        render_printout_html(request, credentials, make_settings(), today=TODAY)
    assert "basis data" not in render_printout_html(make_request(), make_credentials(),
                                                    make_settings(), today=TODAY)


def test_printout_refuses_missing_credentials():
    credentials = make_credentials()
    del credentials[f"admin@dinkes.{DOMAIN}"]
    with pytest.raises(ValueError, match="admin@dinkes"):
        render_printout_html(make_request(), credentials, make_settings(), today=TODAY)


def test_printout_refuses_unsafe_subdomain(tmp_path):
    request = make_request()
    request["subdomain"] = "../etc"
    with pytest.raises(ValueError, match="subdomain"):
        render_printout(request, make_credentials(), make_settings(), tmp_path, today=TODAY)
    assert list(tmp_path.iterdir()) == []


def test_printout_reprint_event_and_logo(tmp_path):
    logo = tmp_path / "logo.svg"
    logo.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20">'
        '<rect width="20" height="20" fill="black"/></svg>'
    )
    request = make_request()
    request["agency"]["category"] = "kegiatan"
    request["agency"]["ends"] = "2026-12-31"
    credentials = make_credentials()
    for entry in credentials.values():
        entry["reprint"] = True
    settings = make_settings()
    settings["letterhead"]["logo"] = str(logo)
    path = render_printout(request, credentials, settings, tmp_path / "out", today=TODAY)
    text = pdftotext(path, 1, 1)
    assert "CETAK ULANG" in text
    assert "31 Desember 2026" in text
    assert "K7mP-x3Rt-9wQz-Hn4c" in text


def test_printout_missing_logo_is_an_error():
    settings = make_settings()
    settings["letterhead"]["logo"] = "/nonexistent/logo.png"
    with pytest.raises(FileNotFoundError):
        render_printout_html(make_request(), make_credentials(), settings, today=TODAY)


def test_printout_overwrite_stays_private(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    old = out / "dinkes.pdf"
    old.write_bytes(b"old")
    old.chmod(0o644)
    path = render_printout(make_request(), make_credentials(), make_settings(), out, today=TODAY)
    assert path == old
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"%PDF-")


def test_templates_dir_overrides_one_template(tmp_path):
    (tmp_path / "letterhead.html.j2").write_text(
        "<p class='kop'>KOP KHUSUS {{ letterhead.office }}</p>\n"
    )
    settings = make_settings(templates_dir=str(tmp_path))
    html = render_printout_html(make_request(), make_credentials(), settings, today=TODAY)
    assert "KOP KHUSUS DINAS KOMUNIKASI DAN INFORMATIKA" in html
    assert "BERITA ACARA SERAH TERIMA" in html  # the rest still comes from the package


def test_undefined_variable_in_template_fails_loudly(tmp_path):
    (tmp_path / "letterhead.html.j2").write_text("{{ letterhead.no_such_field.x }}\n")
    settings = make_settings(templates_dir=str(tmp_path))
    with pytest.raises(Exception, match="no_such_field"):
        render_printout_html(make_request(), make_credentials(), settings, today=TODAY)


# ---------------------------------------------------------------------------
# Run report
# ---------------------------------------------------------------------------


def test_report_writes_markdown_json_and_pdf(tmp_path):
    run = make_run()
    paths = render_report(run, make_settings(), tmp_path / "reports")
    assert set(paths) == {"md", "json", "pdf"}
    for kind, path in paths.items():
        assert path.name == f"20261130T052100Z.{kind}"
        assert path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0

    document = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert document.pop("format") == documents.REPORT_FORMAT == 1
    assert document == run

    markdown = paths["md"].read_text(encoding="utf-8")
    assert markdown.startswith("# LAPORAN HASIL PEMBUATAN SUBDOMAIN DAN EMAIL INSTANSI")
    assert "| Status | **BERHASIL** |" in markdown
    assert "1 menit 5 detik" in markdown and "2,4 detik" in markdown
    assert "15 menit" in markdown and "DILEWATI" in markdown
    assert "cukup \\| sisa 38,2 GiB" in markdown  # pipe escaped inside a table cell
    assert "50,0 GiB" in markdown and "38,2 GiB" in markdown
    assert "**GAGAL** | login ditolak |" in markdown
    assert_markdown_tables_are_rectangular(markdown)

    text = pdftotext(paths["pdf"])
    assert "LAPORAN HASIL PEMBUATAN SUBDOMAIN DAN EMAIL INSTANSI" in text
    assert "20261130T052100Z" in text
    assert "BERHASIL" in text and "GAGAL" in text
    assert "Dinas Kesehatan" in text
    assert "ci-runner-01" in text
    assert "30 November 2026 pukul 13.21.00 WITA" in text
    assert " UTC" not in text and " UTC" not in markdown  # one time zone: WITA
    assert "1 menit 47 detik" in text  # finished - started
    assert "Halaman 1 dari" in text


def test_report_markdown_tables_keep_their_shape(tmp_path):
    run = make_run()
    run["requests"][0]["agency"] = "Dinas A | B\nbaris baru"
    paths = render_report(run, make_settings(), tmp_path)
    markdown = paths["md"].read_text(encoding="utf-8")
    table = [line for line in markdown.splitlines() if line.startswith("| 1 | dinkes | Dinas")]
    assert table == ["| 1 | dinkes | Dinas A \\| B baris baru | Baru |"]
    assert_markdown_tables_are_rectangular(markdown)


def test_report_failed_run(tmp_path):
    run = make_run()
    run["status"] = "failed"
    run["failure"] = "Ruang penyimpanan tidak cukup pada lab:/"
    run["finished"] = None
    run["steps"][0]["status"] = "failed"
    run["storage"][0]["free_bytes_before"] = 41016844288
    run["storage"][0]["free_bytes_after"] = 37795618816
    paths = render_report(run, make_settings(), tmp_path)
    markdown = paths["md"].read_text(encoding="utf-8")
    assert "| Status | **GAGAL** |" in markdown
    assert "Ruang penyimpanan tidak cukup pada lab:/" in markdown
    assert "Sisa sebelum" in markdown and "35,2 GiB" in markdown
    text = pdftotext(paths["pdf"])
    assert "GAGAL" in text and "Ruang penyimpanan tidak cukup" in text


@pytest.mark.parametrize(
    "where",
    ["top", "step", "storage", "postcheck", "nested_list", "upper_case"],
)
def test_report_refuses_any_password_key(tmp_path, where):
    run = make_run()
    if where == "top":
        run["password"] = "K7mP-x3Rt-9wQz-Hn4c"
    elif where == "step":
        run["steps"][1]["password"] = "K7mP-x3Rt-9wQz-Hn4c"
    elif where == "storage":
        run["storage"][0]["extra"] = {"password": None}
    elif where == "postcheck":
        run["postchecks"][1]["login"] = {"user": "admin", "password": "x"}
    elif where == "nested_list":
        run["requests"][0]["accounts"] = [[{"password": "x"}]]
    else:
        run["requests"][0]["Password"] = "x"
    with pytest.raises(ValueError, match="password"):
        render_report(run, make_settings(), tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


def test_report_refuses_unsafe_run_id(tmp_path):
    run = make_run()
    run["run_id"] = "../../etc/passwd-x"
    with pytest.raises(ValueError, match="run_id"):
        render_report(run, make_settings(), tmp_path)


def test_report_input_is_not_modified(tmp_path):
    run = make_run()
    before = copy.deepcopy(run)
    render_report(run, make_settings(), tmp_path)
    assert run == before


def test_module_exports():
    for name in (
        "render_printout",
        "render_printout_html",
        "render_report",
        "format_duration_id",
        "format_date_id",
    ):
        assert callable(getattr(documents, name))


def test_printout_date_defaults_to_today_in_the_regency():
    html = render_printout_html(make_request(), make_credentials(), make_settings())
    assert format_date_id(formatting.regency_today()) in html


def test_report_is_dated_in_wita(tmp_path):
    run = make_run()
    run["started"] = "2026-11-30T17:20:00+00:00"
    run["finished"] = "2026-11-30T17:30:00+00:00"  # 1 December, 01.30 WITA
    markdown = render_report(run, make_settings(), tmp_path)["md"].read_text(encoding="utf-8")
    assert "| Selesai | 1 Desember 2026 pukul 01.30.00 WITA |" in markdown
    assert "Instansi, 1 Desember 2026." in markdown


# ---------------------------------------------------------------------------
# Issue 17: documents a person can trust
# ---------------------------------------------------------------------------


def sop_steps(ok=True, printouts=1, origins=None, failed=()):
    seconds = {1: 0.2, 2: 0.3, 3: 2.4, 4: 65.2, 5: 3.0, 6: 8.0, 7: 4.1, 8: 2.0}
    if not ok:
        seconds = {1: 0.2, 2: 0.3, 3: 2.4}
    return run_steps(seconds, set(failed), ok=ok, check=False, printouts=printouts, requests=1,
                     new=1, origins=origins or {"lab": True, "git": True, "requests": {}})


def test_report_has_the_handover_step_and_the_sops_135_minutes(tmp_path):
    run = make_run()
    run["steps"] = sop_steps()
    assert [s["number"] for s in run["steps"]] == list(range(1, 10))
    assert sum(s["standard_minutes"] for s in run["steps"]) == 135
    paths = render_report(run, make_settings(), tmp_path)
    markdown = paths["md"].read_text(encoding="utf-8")
    (row9,) = [line for line in markdown.splitlines() if line.startswith("| 9 |")]
    assert "Penyerahan hasil kepada pengelola / admin instansi" in row9
    assert "| MANUAL |" in row9 and "| - | 15 menit |" in row9  # done by hand, not timed
    assert "**135 menit**" in markdown
    assert_markdown_tables_are_rectangular(markdown)
    text = pdftotext(paths["pdf"])
    assert "135 menit" in text and "MANUAL" in text


def test_handover_step_of_a_failed_run_was_not_done():
    steps = sop_steps(ok=False, printouts=0, failed=[4])
    assert steps[3]["status"] == "failed"
    assert steps[8]["status"] == "skipped"
    assert steps[8]["detail"] == "Tidak dijalankan karena langkah sebelumnya gagal."


def test_steps_1_and_2_say_only_what_is_known_of_the_requests():
    lab = sop_steps(origins={"lab": True, "git": True, "requests": {"dinkes": {}}})
    assert lab[0]["detail"].startswith("Proses lab: permohonan contoh")
    assert lab[1]["detail"] == "1 permohonan divalidasi (1 baru) dan diproses pada proses ini."
    origins = {"lab": False, "git": True, "requests": {
        "dinkes": {"commit": "f40f565", "date": "2026-11-28", "changed": False},
        "bappeda": {"commit": "c879f11", "date": "2026-11-20", "changed": False},
        "pasola": {"commit": "c879f11", "date": "2026-11-20", "changed": True}}}
    detail = origin_text(origins)
    assert detail == (
        "Berkas permohonan masuk melalui dinkes: commit f40f565 (2026-11-28); "
        "bappeda: commit c879f11 (2026-11-20). Belum di-commit atau diubah sesudah commit "
        "terakhir: pasola (tidak tercatat persetujuannya).")
    many = {"lab": False, "git": True, "requests": {
        f"a{i}": {"commit": "abc1234", "date": "2026-11-20", "changed": False} for i in range(7)}}
    assert origin_text(many) == "Berkas permohonan masuk melalui 7 permohonan: commit abc1234 " \
                                "(2026-11-20)."
    assert "tanpa riwayat git" in origin_text({"lab": False, "git": False,
                                               "requests": {"x": {}}})
    assert origin_text(None) == "Asal permohonan tidak tercatat."
    for text in (detail, lab[0]["detail"], origin_text(many)):
        assert "pull request" not in text and "Disetujui" not in text


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.test",
                    *args], check=True, capture_output=True)


def test_request_origins_reads_the_commit_that_brought_each_file(tmp_path):
    folder = tmp_path / "requests"
    folder.mkdir()
    for name in ("dinkes", "bappeda"):
        (folder / f"{name}.yml").write_text(f"subdomain: {name}\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "two requests")
    (folder / "bappeda.yml").write_text("subdomain: bappeda\n# changed\n")
    (folder / "pasola.yml").write_text("subdomain: pasola\n")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short", "HEAD"],
                          check=True, capture_output=True, text=True).stdout.strip()
    requests = [{"subdomain": n, "file": str(folder / f"{n}.yml")}
                for n in ("dinkes", "bappeda", "pasola")]
    out = request_origins(tmp_path, requests)
    assert out["git"] is True and out["lab"] is False
    assert out["requests"]["dinkes"]["commit"] == head
    assert out["requests"]["dinkes"]["changed"] is False
    assert out["requests"]["bappeda"] == {**out["requests"]["dinkes"], "changed": True}
    assert out["requests"]["pasola"] == {"commit": None, "date": None, "changed": True}
    # A copy without git says so rather than inventing an approval.
    plain = tmp_path.parent / "plain"
    plain.mkdir()
    (plain / "dinkes.yml").write_text("x\n")
    out = request_origins(plain, [{"subdomain": "dinkes", "file": str(plain / "dinkes.yml")}])
    assert out["git"] is False and out["requests"]["dinkes"]["changed"] is True


def test_report_is_signed_by_the_head_of_division_from_the_inventory(tmp_path):
    head = {"name": "Agustinus Bora, S.T.", "nip": "197805122005011003",
            "position": "Kepala Bidang Layanan E-Government"}
    paths = render_report(make_run(), make_settings(head_of_division=head), tmp_path)
    text = pdftotext(paths["pdf"])
    assert "Agustinus Bora, S.T." in text and "NIP. 197805122005011003" in text
    assert "Mengetahui," in text and "Kepala Bidang Layanan E-Government" in text
    # Without one, blanks to fill in by hand and the position from the letterhead.
    text = pdftotext(render_report(make_run(), make_settings(), tmp_path / "b")["pdf"])
    assert "NIP. ......" in text and "Kepala Bidang Layanan E-Government" in text


def test_config_passes_the_head_of_division_to_the_documents():
    from sop.config import load_settings

    for inventory in ("inventory/lab", "inventory/production"):
        head = load_settings(inventory).documents()["head_of_division"]
        assert head["name"] and head["nip"] and head["position"], inventory


def _pdf_words(path: Path) -> list[str]:
    """Every word of a PDF as placed on the page (a word broken over two lines is two)."""
    html = subprocess.run(["pdftotext", "-bbox", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout
    return re.findall(r"<word [^>]*>([^<]*)</word>", html)


def test_report_breaks_no_word_in_headers_or_host_names(tmp_path):
    run = make_run()
    host = f"mail1.{DOMAIN}"
    for entry in run["storage"]:
        entry.update(host=host, free_bytes_before=1, free_bytes_after=1,
                     allocated_bytes_before=1, allocated_bytes_after=1)
    run["postchecks"][0]["target"] = f"kepala.dinas@dinkes.{DOMAIN}"
    run["supervision"] = {"warn_percent": 80, "agencies": [{
        "agency": "Dinas Kesehatan", "subdomain": "dinkes",
        "contact": {"name": "Maria Ngongo", "position": None, "phone": None},
        "accounts": [{"name": f"kepala.dinas@dinkes.{DOMAIN}", "kind": "mailbox",
                      "used_bytes": 1900000000, "quota_bytes": 2147483648, "percent": 88.5}]}]}
    run["steps"] = sop_steps()
    run["lifecycle"] = {"today": "2026-11-30", "suspended": ["pasola"], "states": {}}
    run["backups"] = [{"host": host, "last_good": "2026-11-30T02:00:00+00:00",
                       "original_size": 1, "repository_size": 1, "problems": []}]
    html = (documents.TEMPLATES_DIR / "report.html.j2").read_text()
    headers = {w for th in re.findall(r"<th[^>]*>([^<{]+)</th>", html)
               for w in re.findall(r"[A-Za-z]{4,}", th)}
    assert {"Subdomain", "Teralokasi", "pelaksanaan", "Cadangan", "Pengelola"} <= headers
    words = _pdf_words(render_report(run, make_settings(), tmp_path)["pdf"])
    clean = [w.strip("()/,.") for w in words]
    for word in sorted(headers):
        assert word in clean
        # the start of a header word on one line and its rest on the next
        broken = [w for w in clean if len(w) >= 3 and w != word and word.startswith(w)]
        assert broken == [], f"{word!r} broken into {broken}"
    # A host name or an address wraps at a dot or before an "@" only.
    zone = [w for w in words if "sumbab" in w or "dayakab" in w]
    assert zone and all("sumbabaratdayakab" in w for w in zone), zone
    local = [w for w in words if "kepala" in w or "dinas@" in w]
    assert local and all("kepala.dinas" in w or w.endswith("kepala.") for w in local), local


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "-"), (512, "512 byte"), (1024, "1 KB"), (524288000, "500 MB"),
     (1073741824, "1 GB"), (1610612736, "1,5 GB"), (5368709120, "5 GB"),
     (1099511627776, "1 TB"), (1023 * 1024 ** 2, "1.023 MB")],
)
def test_format_size_id_writes_sizes_as_staff_do(value, expected):
    assert formatting.format_size_id(value) == expected


def test_printout_sizes_in_mb_and_gb_and_upload_into_public(printout):
    page1 = pdftotext(printout, 1, 1)
    assert "kuota 1 GB" in page1 and "kuota 2 GB" in page1
    assert "GiB" not in page1
    assert "public/" in page1 and "ke dalam folder public/" in " ".join(page1.split())


def test_printout_of_a_mail_only_request_shows_no_website():
    request = make_request()
    request["hosting"] = None
    credentials = make_credentials()
    del credentials["hosting:dinkes"]
    html = render_printout_html(request, credentials, make_settings(), today=TODAY)
    assert "Alamat situs" not in html and "https://" not in html
    assert "alamat situs web" not in html  # the handover table neither
    assert f"Domain alamat email</td><td class=\"colon\">:</td><td><b>dinkes.{DOMAIN}" in html
    assert "public/" not in html
    # With hosting the website is there, and the mail domain is not repeated.
    html = render_printout_html(make_request(), make_credentials(), make_settings(), today=TODAY)
    assert f"https://dinkes.{DOMAIN}" in html and "Domain alamat email" not in html


def test_printout_section_d_gives_the_webmail_address_when_there_is_one():
    settings = make_settings()
    html = render_printout_html(make_request(), make_credentials(), settings, today=TODAY)
    assert "Webmail" not in html, "no webmail configured: none printed"
    settings["webmail"] = {"hostname": f"webmail.{DOMAIN}"}
    html = render_printout_html(make_request(), make_credentials(), settings, today=TODAY)
    section_d = html.split("Pengaturan Aplikasi Email", 1)[1].split("</table>", 1)[0]
    assert f"<td>Webmail (peramban)</td><td colspan=\"3\">https://webmail.{DOMAIN}/</td>" \
        in section_d
