"""Printed and reported documents (SOP steps 7, 8 and 9).

Two documents, both in Bahasa Indonesia because they are filed as government
records:

* the credential printout (steps 7 and 9): one PDF per request with the
  account data (page 1, confidential) and the handover receipt ("berita acara
  serah terima", page 2);
* the run report (step 8): Markdown, JSON and PDF, never holding a password.

The layout lives in Jinja2 templates (``templates/*.html.j2``, ``style.css``)
so an administrator can change the letterhead without touching Python; a
folder named by ``settings["templates_dir"]`` is searched first, so a single
template can be overridden by dropping a file of the same name there.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from .chart import chart_svg
from .files import write_atomic
from .formatting import (
    format_bytes_id,
    format_date_id,
    format_datetime_id,
    format_duration_id,
    format_minutes_id,
    format_size_id,
    format_weekday_id,
    integer_id,
    md_cell,
    regency_today,
    title_id,
    to_datetime,
    to_regency_date,
)

__all__ = [
    "format_bytes_id",
    "format_date_id",
    "format_datetime_id",
    "format_duration_id",
    "render_printout",
    "render_printout_html",
    "render_printouts",
    "render_report",
]

TEMPLATES_DIR = Path(__file__).parent / "templates"
# Below this many printouts per worker process, printing stays in one process.
PARALLEL_PRINTOUTS_MIN = 4
# Version of the JSON run report's layout ("format"); raised when a key changes meaning.
REPORT_FORMAT = 1
# Rows of a PDF report table listed in full (see _report_context).
PDF_FULL_ROWS = 40

STATUS_ID = {
    "ok": "BERHASIL",
    "failed": "GAGAL",
    "skipped": "DILEWATI",
    "changed": "BERHASIL",
    "manual": "MANUAL",  # step 9: the handover, done by hand
}
CATEGORY_ID = {
    "instansi": "Nama instansi",
    "layanan_publik": "Nama layanan publik",
    "layanan": "Nama layanan publik",
    "kegiatan": "Nama kegiatan",
}
CHECK_NAMES_ID = {"dns": "DNS", "http": "HTTP", "https": "HTTPS", "imap": "IMAP", "smtp": "SMTP",
                  "webmail": "Webmail"}

_SAFE_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SAFE_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


# ---------------------------------------------------------------------------
# Formatting helpers (also registered as template filters)
# ---------------------------------------------------------------------------


def _address(value: Any) -> Markup:
    """An email address for HTML that may wrap before the "@" when it must.

    Use it on text placed directly in a table cell: WeasyPrint 70 mis-measures
    a <wbr> inside a nested inline element.
    """
    local, at, domain = str(value).partition("@")
    if not at:
        return Markup.escape(str(value))
    return Markup.escape(local) + Markup("<wbr>@") + Markup.escape(domain)


def _breakable(value: Any) -> Markup:
    """A host name, address or URL for a narrow table cell: it may wrap after
    a dot or a slash and before an "@", never inside a word.

    Use it on text placed directly in a table cell, like :func:`_address`.
    """
    pieces = re.split(r"(?<=[./])|(?=@)", str(value))
    return Markup("<wbr>").join(Markup.escape(piece) for piece in pieces if piece)


def _css_string(value: Any) -> Markup:
    """A value as a quoted CSS string, safe inside a <style> element."""
    out = []
    for char in str(value):
        if char.isalnum() or char in " .,:;-_/()@":
            out.append(char)
        else:
            out.append(f"\\{ord(char):x} ")
    # Safe: every character outside a small plain set is a CSS escape above.
    return Markup('"' + "".join(out) + '"')  # noqa: S704


# ---------------------------------------------------------------------------
# Template environment and PDF rendering
# ---------------------------------------------------------------------------


def _environment(settings: Mapping[str, Any]) -> jinja2.Environment:
    search = [str(TEMPLATES_DIR)]
    override = settings.get("templates_dir")
    if override:
        search.insert(0, str(Path(override)))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2", "xml.j2"),
            default_for_string=True,
            default=False,
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        date_id=format_date_id,
        weekday_id=format_weekday_id,
        datetime_id=format_datetime_id,
        duration_id=lambda s: "-" if s is None else format_duration_id(s),
        bytes_id=format_bytes_id,
        size_id=format_size_id,
        minutes_id=format_minutes_id,
        title_id=title_id,
        mdcell=md_cell,
        css_string=_css_string,
        address=_address,
        breakable=_breakable,
    )
    return env


_font_config: tuple[int, Any] | None = None  # (process id, its FontConfiguration)


def _font_configuration() -> Any:
    """This process's FontConfiguration, made once. A new one for every
    document grows the process by about 0.3 MB a sheet that is never given
    back (fonts loaded again)."""
    global _font_config
    if _font_config is None or _font_config[0] != os.getpid():
        from weasyprint.text.fonts import FontConfiguration

        _font_config = (os.getpid(), FontConfiguration())
    return _font_config[1]


def warm() -> None:
    """Import WeasyPrint and make the font configuration ahead of the first
    document (about 0.6 s): `sop apply` does it in a thread while it waits
    for Ansible, and joins that thread before it makes any document."""
    import weasyprint  # noqa: F401

    _font_configuration()


def _pdf_bytes(html: str) -> bytes:
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    # Local files only (the logo): no network while printing, and a resource
    # that cannot be read stops the rendering instead of being left out.
    fetcher = URLFetcher(allowed_protocols=("file", "data"), fail_on_errors=True)
    return HTML(string=html, base_url=str(TEMPLATES_DIR), url_fetcher=fetcher).write_pdf(
        font_config=_font_configuration()
    )


def _letterhead(settings: Mapping[str, Any]) -> dict[str, Any]:
    head = dict(settings.get("letterhead") or {})
    for key in ("regency", "office", "division", "address", "phone", "email", "city", "logo"):
        head.setdefault(key, None)
    if not head["regency"] or not head["office"]:
        raise ValueError("settings.letterhead needs at least 'regency' and 'office'")
    logo = head["logo"]
    head["logo_uri"] = None
    if logo:
        logo_path = Path(logo).expanduser()
        if not logo_path.is_file():
            raise FileNotFoundError(f"letterhead logo not found: {logo_path}")
        head["logo_uri"] = logo_path.resolve().as_uri()
    regency = str(head["regency"])
    # "PEMERINTAH KABUPATEN SUMBA BARAT DAYA" -> "Kabupaten Sumba Barat Daya"
    head.setdefault("regency_name", title_id(re.sub(r"^PEMERINTAH\s+", "", regency, flags=re.I)))
    head.setdefault("office_name", f"{title_id(str(head['office']))} {head['regency_name']}")
    return head


# ---------------------------------------------------------------------------
# Credential printout (SOP steps 7 and 9)
# ---------------------------------------------------------------------------


def _credential(credentials: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    entry = credentials.get(key)
    if not entry or not entry.get("password") or not entry.get("username"):
        raise ValueError(f"no username/password in the register for {key!r}")
    return entry


def _webmail_url(webmail: Mapping[str, Any] | None) -> str | None:
    """The webmail's address (``sop_webmail.hostname``), None without one."""
    hostname = (webmail or {}).get("hostname")
    return f"https://{hostname}/" if hostname else None


def _with_defaults(defaults: Mapping[str, Any], given: Mapping[str, Any] | None) -> dict:
    return {**defaults, **(given or {})}


def _agency(request: Mapping[str, Any]) -> dict[str, Any]:
    agency = _with_defaults({"abbreviation": None, "ends": None}, request["agency"])
    category = agency.get("category") or "instansi"
    agency["category_label"] = CATEGORY_ID.get(category, title_id(str(category).replace("_", " ")))
    return agency


def _hosting(request: Mapping[str, Any], credentials: Mapping[str, Any],
             settings: Mapping[str, Any], used: list) -> dict[str, Any] | None:
    """The SFTP account of the website, or None for a mail-only request."""
    if not request.get("hosting"):
        return None
    sftp = settings.get("sftp") or {}
    entry = _credential(credentials, f"hosting:{request['subdomain']}")
    used.append(entry)
    return {
        "host": sftp.get("host") or request["fqdn"],
        "port": sftp.get("port") or 22,
        # the site's document root inside the account (sftp_hosting_web_dir)
        "web_dir": sftp.get("web_dir") or "public",
        "username": entry["username"],
        "password": entry["password"],
        "quota_bytes": request["hosting"].get("quota_bytes"),
        "database": _database(request, credentials, used),
    }


def _database(request: Mapping[str, Any], credentials: Mapping[str, Any],
              used: list) -> dict[str, Any] | None:
    """The site's MariaDB database (hosting.database), or None."""
    if not request["hosting"].get("database"):
        return None
    entry = _credential(credentials, f"database:{request['subdomain']}")
    used.append(entry)
    # The user and the database share their name (model.database_name); the
    # server is the web host itself, reached by PHP through its local socket.
    return {"host": "localhost", "name": entry["username"], "username": entry["username"],
            "password": entry["password"]}


def _mailboxes(mail: Mapping[str, Any], credentials: Mapping[str, Any],
               used: list) -> list[dict[str, Any]]:
    out = []
    for box in mail.get("mailboxes") or []:
        entry = _credential(credentials, box["address"])
        used.append(entry)
        out.append({"address": box["address"], "username": entry["username"],
                    "password": entry["password"], "holder": box.get("holder"),
                    "position": box.get("position"), "quota_bytes": box.get("quota_bytes")})
    return out


def _aliases(mail: Mapping[str, Any], mailboxes: list[dict]) -> list[dict[str, Any]]:
    """Aliases, with their targets' positions in the mailbox list when every
    target is one of the request's mailboxes."""
    numbers = {box["address"]: index for index, box in enumerate(mailboxes, start=1)}
    out = []
    for alias in mail.get("aliases") or []:
        targets = list(alias.get("to") or [])
        inside = bool(targets) and all(t in numbers for t in targets)
        out.append({"address": alias["address"], "to": targets,
                    "to_mailboxes": [numbers[t] for t in targets] if inside else None})
    return out


def _password_column_cm(mailboxes: list[dict]) -> float:
    """As wide as the longest password in the monospace face (10 pt bold
    DejaVu Sans Mono: 0.213 cm a character), so a password stays on one line
    and the addresses get the rest of the page."""
    longest = max((len(str(box["password"])) for box in mailboxes), default=0)
    return round(min(max(longest * 0.213 + 0.45, 3.6), 7.0), 2)


_MAIL_CLIENT = {"imap_host": None, "imap_port": 993, "imap_security": "SSL/TLS",
                "smtp_host": None, "smtp_port": 587, "smtp_security": "STARTTLS"}
_ADMINISTRATOR = {"name": None, "nip": None, "position": "Administrator Sistem"}


def _site(request: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """What the subdomain serves: a website (hosting), the mail domain, or neither."""
    mail = request.get("mail") or {}
    scheme = settings.get("web_scheme") or "https"
    return {
        "url": f"{scheme}://{request['fqdn']}" if request.get("hosting") else None,
        "mail_domain": mail.get("address_domain") if mail.get("mailboxes") else None,
    }


def _printout_context(
    request: Mapping[str, Any],
    credentials: Mapping[str, Any],
    settings: Mapping[str, Any],
    today: date | None,
) -> dict[str, Any]:
    today = today or regency_today()
    subdomain = request["subdomain"]
    if not _SAFE_SUBDOMAIN.match(str(subdomain)):
        raise ValueError(f"not a subdomain label: {subdomain!r}")
    used: list[Mapping[str, Any]] = []
    hosting = _hosting(request, credentials, settings, used)
    mail = request.get("mail") or {}
    mailboxes = _mailboxes(mail, credentials, used)
    return {
        "request": request,
        "settings": settings,
        "letterhead": _letterhead(settings),
        "administrator": _with_defaults(_ADMINISTRATOR, settings.get("administrator")),
        "today": today,
        "subdomain": subdomain,
        "fqdn": request["fqdn"],
        **_site(request, settings),
        "letter": _with_defaults({"number": None, "date": None, "subject": None},
                                 request.get("letter")),
        "agency": _agency(request),
        "contact": _with_defaults({"name": None, "nip": None, "position": None, "phone": None},
                                  request.get("contact")),
        "hosting": hosting,
        "mailboxes": mailboxes,
        "aliases": _aliases(mail, mailboxes),
        "mail_client": _with_defaults(_MAIL_CLIENT, settings.get("mail_client")),
        "webmail_url": _webmail_url(settings.get("webmail")),
        "password_column_cm": _password_column_cm(mailboxes),
        "accounts_created": sorted({str(e["created"]) for e in used if e.get("created")}),
        "reprint": any(bool(e.get("reprint")) for e in used),
        "footer_note": (
            "Dihasilkan oleh Sistem SOP Pembuatan Subdomain dan Email Instansi, "
            f"{format_date_id(today)}"
        ),
    }


def render_printout_html(
    request: Mapping[str, Any],
    credentials: Mapping[str, Any],
    settings: Mapping[str, Any],
    today: date | None = None,
) -> str:
    """The credential printout as HTML (page 1: account data, page 2: handover receipt)."""
    context = _printout_context(request, credentials, settings, today)
    return _environment(settings).get_template("printout.html.j2").render(context)


def render_printout(
    request: Mapping[str, Any],
    credentials: Mapping[str, Any],
    settings: Mapping[str, Any],
    out_dir: Path,
    today: date | None = None,
) -> Path:
    """Write ``out_dir/<subdomain>.pdf`` (mode 0600, folder 0700 when created) and return it."""
    html = render_printout_html(request, credentials, settings, today)
    pdf = _pdf_bytes(html)
    out_dir = Path(out_dir)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = out_dir / f"{request['subdomain']}.pdf"
    write_atomic(path, pdf, 0o600)
    return path


def _render_printout_job(job: tuple) -> Path:
    return render_printout(*job)


def render_printouts(
    jobs: list[tuple[Mapping[str, Any], Mapping[str, Any]]],
    settings: Mapping[str, Any],
    out_dir: Path,
    today: date | None = None,
) -> list[Path]:
    """Printouts of many ``(request, credentials)`` pairs, on every core when
    there are several (a first run of hundreds of agencies); paths in order."""
    work = [(req, creds, settings, out_dir, today) for req, creds in jobs]
    workers = min(os.cpu_count() or 1, len(work) // PARALLEL_PRINTOUTS_MIN)
    if workers < 2:
        return [_render_printout_job(job) for job in work]
    from concurrent.futures import ProcessPoolExecutor

    Path(out_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_render_printout_job, work, chunksize=4))


# ---------------------------------------------------------------------------
# Run report (SOP step 8)
# ---------------------------------------------------------------------------


def _walk_keys(value: Any, trail: str = "run") -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key), f"{trail}.{key}"
            yield from _walk_keys(item, f"{trail}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk_keys(item, f"{trail}[{index}]")


def _refuse_secrets(run: Mapping[str, Any]) -> None:
    for key, where in _walk_keys(run):
        lowered = key.lower()
        if "password" in lowered or "passwd" in lowered:
            raise ValueError(f"the run report must not hold passwords: found key {where}")


def _seconds_between(start: Any, end: Any) -> float | None:
    if not start or not end:
        return None
    try:
        delta: timedelta = to_datetime(end) - to_datetime(start)
    except (TypeError, ValueError):
        return None
    return max(delta.total_seconds(), 0.0)


_STEP = {"number": None, "name": None, "standard_minutes": None, "seconds": None,
         "status": None, "output": None, "detail": None}
_STORAGE = {"host": None, "mount": None, "paths": [], "capacity_bytes": None, "free_bytes": None,
            "allocated_bytes": None, "reserve_percent": None, "free_bytes_before": None,
            "free_bytes_after": None, "allocated_bytes_before": None,
            "allocated_bytes_after": None}
_BEFORE_AFTER = ("free_bytes_before", "free_bytes_after", "allocated_bytes_before",
                 "allocated_bytes_after")
_POSTCHECK = {"subdomain": None, "check": None, "target": None, "ok": False, "detail": None}
_REQUEST = {"subdomain": None, "agency": None, "new": None}


def _status_label(status: Any) -> str:
    return STATUS_ID.get(str(status), str(status).upper())


def _steps_context(run: Mapping[str, Any]) -> dict[str, Any]:
    """Section C: the steps with their labels and totals."""
    steps = []
    for step in run.get("steps") or []:
        item = _with_defaults(_STEP, step)
        item["status_label"] = _status_label(item["status"])
        steps.append(item)
    measured = [s["seconds"] for s in steps if isinstance(s["seconds"], int | float)]
    standard = [s["standard_minutes"] for s in steps if s["standard_minutes"] is not None]
    return {
        "steps": steps,
        "steps_seconds_total": sum(measured) if measured else None,
        "steps_standard_total": sum(standard) if standard else None,
    }


def _storage_context(run: Mapping[str, Any]) -> dict[str, Any]:
    """Section D's tables (the charts: _storage_supervision_context)."""
    storage = [_with_defaults(_STORAGE, entry) for entry in run.get("storage") or []]
    return {
        "storage": storage,
        "storage_has_before_after": any(s[k] is not None for s in storage for k in _BEFORE_AFTER),
    }


def _rows_context(run: Mapping[str, Any]) -> dict[str, Any]:
    """Sections B and E, in full for Markdown and JSON, shortened for paper.

    The PDF is read on paper: past PDF_FULL_ROWS rows it lists only the new
    requests and the failed checks, and counts the rest (a run over hundreds
    of agencies otherwise prints dozens of pages, slowly).
    """
    requests = [_with_defaults(_REQUEST, req) for req in run.get("requests") or []]
    postchecks = []
    for check in run.get("postchecks") or []:
        item = _with_defaults(_POSTCHECK, check)
        item["check_label"] = CHECK_NAMES_ID.get(str(item["check"]).lower(), str(item["check"]))
        item["result_label"] = "OK" if item["ok"] else "GAGAL"
        postchecks.append(item)
    pdf_requests, pdf_postchecks = requests, postchecks
    if len(requests) > PDF_FULL_ROWS:
        pdf_requests = [r for r in requests if r["new"]]
    if len(postchecks) > PDF_FULL_ROWS:
        pdf_postchecks = [c for c in postchecks if not c["ok"]]
    omitted = [c for c in postchecks if c["ok"]] if pdf_postchecks is not postchecks else []
    by_kind: dict[str, int] = {}
    for c in omitted:
        by_kind[c["check_label"]] = by_kind.get(c["check_label"], 0) + 1
    return {
        "requests": requests,
        "postchecks": postchecks,
        "postchecks_failed": sum(1 for c in postchecks if not c["ok"]),
        "pdf_requests": pdf_requests,
        "pdf_requests_omitted": len(requests) - len(pdf_requests),
        "pdf_postchecks": pdf_postchecks,
        "pdf_postchecks_omitted": len(omitted),
        "pdf_postchecks_omitted_by_kind": ", ".join(
            f"{kind} {integer_id(n)}" for kind, n in sorted(by_kind.items())),
    }


def _signatories(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Who signs the report: the administrator and, "Mengetahui", the head of division."""
    head = _with_defaults({"name": None, "nip": None, "position": None},
                          settings.get("head_of_division"))
    if not head["position"]:
        division = (settings.get("letterhead") or {}).get("division")
        head["position"] = f"Kepala {division}" if division else "Kepala Bidang"
    return {"administrator": _with_defaults(_ADMINISTRATOR, settings.get("administrator")),
            "head_of_division": head}


def _report_context(run: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    status = str(run.get("status"))
    finished = run.get("finished")
    report_day = to_regency_date(finished or run.get("started") or regency_today())
    life = run.get("lifecycle") or {}
    return {
        "run": run,
        "settings": settings,
        "letterhead": _letterhead(settings),
        **_signatories(settings),
        "run_id": run["run_id"],
        "started": run.get("started"),
        "finished": finished,
        "elapsed_seconds": _seconds_between(run.get("started"), finished),
        "controller": run.get("controller"),
        "inventory": run.get("inventory"),
        "status": status,
        "status_label": _status_label(status),
        "failure": run.get("failure"),
        **_rows_context(run),
        **_steps_context(run),
        **_storage_context(run),
        "notes": [str(n) for n in run.get("notes") or []],
        "changed": dict(run.get("changed") or {}),
        "report_date": report_day,
        "footer_note": (
            "Dihasilkan oleh Sistem SOP Pembuatan Subdomain dan Email Instansi, "
            f"{format_date_id(report_day)}"
        ),
        **_storage_supervision_context(run),
        "lifecycle_rows": _lifecycle_rows(life),
        "lifecycle_warnings": list(life.get("warnings") or []),
    }


def _lifecycle_rows(life: Mapping[str, Any]) -> list[dict]:
    """Section F (issue 9): suspended, archived, restored and purged this run."""
    rows = []
    states = life.get("states") or {}
    for label in life.get("suspended") or []:
        rows.append({"what": "Ditangguhkan", "name": label, "date": life.get("today"),
                     "detail": (states.get(label) or {}).get("reason") or ""})
    for label, st in sorted(states.items()):
        if st.get("state") == "expired":
            rows.append({"what": "Kegiatan berakhir", "name": label, "date": life.get("today"),
                         "detail": st.get("reason") or ""})
    for entry in life.get("archived_now") or []:
        rows.append({"what": "Diarsipkan", "name": entry["id"], "date": entry.get("archived"),
                     "detail": f"dihapus permanen mulai {entry.get('purge_after')}"})
    for entry in life.get("restored") or []:
        rows.append({"what": "Dipulihkan", "name": entry["id"], "date": life.get("today"),
                     "detail": f"dari arsip {entry.get('archived')}; kata sandi tetap"})
    for entry in life.get("purged") or []:
        rows.append({"what": "Dihapus permanen", "name": entry["id"], "date": life.get("today"),
                     "detail": f"diarsipkan {entry.get('archived')}"})
    for entry in life.get("archived_kept") or []:
        rows.append({"what": "Tetap dalam arsip", "name": entry["id"],
                     "date": entry.get("archived"),
                     "detail": f"dihapus permanen mulai {entry.get('purge_after')}"})
    return rows


def _storage_supervision_context(run: Mapping[str, Any]) -> dict[str, Any]:
    """Section D's forecast charts and supervision list (SOP warnings 3-5)."""
    supervision = run.get("supervision") or {}
    return {
        # chart_svg escapes every text it places in the drawing.
        "storage_forecasts": [{**f, "chart": Markup(chart_svg(f))}  # noqa: S704
                              for f in run.get("forecast") or []],
        "supervision_agencies": list(supervision.get("agencies") or []),
        "warn_percent": supervision.get("warn_percent"),
    }


def render_report(
    run: Mapping[str, Any], settings: Mapping[str, Any], out_dir: Path
) -> dict[str, Path]:
    """Write ``out_dir/<run_id>.md``, ``.json`` and ``.pdf``; return their paths by kind.

    Raises ValueError when any key anywhere in ``run`` names a password: the
    report is published, passwords never belong in it.
    """
    _refuse_secrets(run)
    run_id = str(run.get("run_id") or "")
    if not _SAFE_RUN_ID.match(run_id):
        raise ValueError(f"run_id is not usable as a file name: {run_id!r}")
    context = _report_context(run, settings)
    env = _environment(settings)
    markdown = env.get_template("report.md.j2").render(context)
    html = env.get_template("report.html.j2").render(context)
    document = json.dumps({"format": REPORT_FORMAT, **run}, ensure_ascii=False, indent=2,
                          sort_keys=True, default=str) + "\n"
    pdf = _pdf_bytes(html)

    out_dir = Path(out_dir)
    out_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    paths = {
        "md": out_dir / f"{run_id}.md",
        "json": out_dir / f"{run_id}.json",
        "pdf": out_dir / f"{run_id}.pdf",
    }
    write_atomic(paths["md"], markdown.encode("utf-8"), 0o640)
    write_atomic(paths["json"], document.encode("utf-8"), 0o640)
    write_atomic(paths["pdf"], pdf, 0o640)
    return paths
