"""Unit tests of sop.validate: the request contract (requests/README.md).

Run with ``PYTHONPATH=scripts pytest tests/unit/test_validate.py``. No root,
no network; every test uses a fixed "today" so that dates are deterministic.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import re
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sop.validate import (
    CONTRACT_RESERVED_LABELS,
    CONTRACT_SPECIAL_LOCAL_PARTS,
    DEFAULT_POLICY,
    MAX_FILE_BYTES,
    SCHEMA_PATH,
    Problem,
    format_size,
    parse_size,
    validate_paths,
)

TODAY = datetime.date(2026, 11, 30)
REPO = Path(__file__).resolve().parents[2]
ZONE = DEFAULT_POLICY["zone"]

# The example of the contract (request-format.md), verbatim.
CONTRACT_EXAMPLE = """\
# requests/dinkes.yml
letter:                         # the request letter addressed to the Regent (SOP step 1)
  number: "000.1/123/DINKES/XI/2026"
  date: 2026-11-20              # not in the future
  subject: Permohonan pembuatan subdomain dan email dinas
agency:
  name: Dinas Kesehatan         # official name
  abbreviation: DINKES          # official abbreviation
  category: instansi            # instansi | layanan_publik | kegiatan
  # ends: 2027-03-31            # required when category is kegiatan (an event)
contact:                        # the agency's manager / admin who receives the handover
  name: Maria Ngongo
  nip: "198501012010012001"     # 18-digit civil-servant number
  position: Kepala Sub Bagian Umum
  phone: "+62 812-3456-7890"
subdomain: dinkes               # label under the regency's zone; equals the file name
hosting:                        # omit the whole key for a mail-only request
  quota: 2G                     # disk quota of the hosting account (K, M, G, T; binary units)
mail:                           # omit the whole key for a web-only request
  domain: subdomain             # subdomain: @dinkes.<zone>; parent: @<zone> (local parts then must be unique regency-wide)
  mailboxes:
    - local_part: admin
      holder: Maria Ngongo      # person who uses the mailbox
      quota: 1G
    - local_part: kepala
      holder: dr. Yohanes Bili
      quota: 1G
  aliases:                      # optional
    - local_part: info
      to: [admin]               # local parts of this request, or full addresses
"""  # noqa: E501
CONTRACT = yaml.safe_load(CONTRACT_EXAMPLE)


# --- Helpers ----------------------------------------------------------------


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def check(folder: Path, content: str | bytes | dict, name: str = "dinkes.yml",
          policy: dict | None = None) -> tuple[list[dict], list[Problem]]:
    """Validate one request written to ``folder/name``."""
    text = dump(content) if isinstance(content, dict) else content
    return validate_paths([write(folder, name, text)], policy, today=TODAY)


def request(**top: Any) -> dict:
    """A copy of the contract example with top-level fields replaced (None removes)."""
    doc = copy.deepcopy(CONTRACT)
    for key, value in top.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def only_problem(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def _locate(doc: dict, dotted: str) -> tuple[Any, str | int]:
    """Container and key of a dotted field path such as ``mail.mailboxes[1].quota``."""
    parts: list[str | int] = [
        int(token[1:-1]) if token.startswith("[") else token
        for token in re.findall(r"[^.\[\]]+|\[\d+\]", dotted)
    ]
    container: Any = doc
    for part in parts[:-1]:
        container = container[part]
    return container, parts[-1]


Change = Callable[[dict], None]


def put(dotted: str, value: Any) -> Change:
    def change(doc: dict) -> None:
        container, key = _locate(doc, dotted)
        container[key] = value

    return change


def drop(dotted: str) -> Change:
    def change(doc: dict) -> None:
        container, key = _locate(doc, dotted)
        del container[key]

    return change


def both(*changes: Change) -> Change:
    def change(doc: dict) -> None:
        for each in changes:
            each(doc)

    return change


# --- Good requests ----------------------------------------------------------


def test_contract_example_is_valid_and_normalized(tmp_path: Path) -> None:
    path = write(tmp_path, "dinkes.yml", CONTRACT_EXAMPLE)
    requests, problems = validate_paths([tmp_path], today=TODAY)
    assert problems == []
    fqdn = f"dinkes.{ZONE}"
    assert requests == [
        {
            "file": str(path),
            "subdomain": "dinkes",
            "fqdn": fqdn,
            "letter": {
                "number": "000.1/123/DINKES/XI/2026",
                "date": "2026-11-20",
                "subject": "Permohonan pembuatan subdomain dan email dinas",
            },
            "agency": {"name": "Dinas Kesehatan", "abbreviation": "DINKES",
                       "category": "instansi", "ends": None},
            "contact": {"name": "Maria Ngongo", "nip": "198501012010012001",
                        "position": "Kepala Sub Bagian Umum", "phone": "+62 812-3456-7890"},
            "hosting": {"quota": "2G", "quota_bytes": 2 * 1024**3},
            "mail": {
                "domain": "subdomain",
                "address_domain": fqdn,
                "mailboxes": [
                    {"local_part": "admin", "address": f"admin@{fqdn}", "holder": "Maria Ngongo",
                     "position": None, "quota": "1G", "quota_bytes": 1024**3},
                    {"local_part": "kepala", "address": f"kepala@{fqdn}",
                     "holder": "dr. Yohanes Bili", "position": None, "quota": "1G",
                     "quota_bytes": 1024**3},
                ],
                "aliases": [{"local_part": "info", "address": f"info@{fqdn}",
                             "to": [f"admin@{fqdn}"]}],
            },
            "quota_bytes_total": 4 * 1024**3,
        }
    ]
    json.dumps(requests)  # plain data only


@pytest.mark.parametrize(
    ("change", "name"),
    [
        pytest.param(drop("hosting"), "dinkes.yml", id="mail-only"),
        pytest.param(drop("mail"), "dinkes.yml", id="web-only"),
        pytest.param(drop("mail.aliases"), "dinkes.yml", id="no-aliases"),
        pytest.param(both(put("agency.category", "kegiatan"), put("agency.ends", "2027-03-31")),
                     "dinkes.yml", id="event-with-end"),
        pytest.param(put("agency.category", "layanan_publik"), "dinkes.yml", id="public-service"),
        pytest.param(put("status", "suspended"), "dinkes.yml", id="suspended"),
        pytest.param(put("status", "active"), "dinkes.yml", id="status-active"),
        pytest.param(both(put("mail.domain", "parent"),
                          put("mail.mailboxes[0].local_part", "dinkes"),
                          put("mail.aliases", [{"local_part": "dinkes-info", "to": ["dinkes"]}])),
                     "dinkes.yml", id="parent-domain"),
        pytest.param(put("letter.date", "2026-11-30"), "dinkes.yml", id="letter-dated-today"),
        pytest.param(put("agency.name", "Dinas Kependudukan & Pencatatan Sipil"), "dinkes.yml",
                     id="ampersand"),
        pytest.param(put("contact.name", "dr. Yohanes Bili, M.Kes"), "dinkes.yml",
                     id="title-and-comma"),
        pytest.param(put("contact.name", "Désirée O'Neil (Plt.)"), "dinkes.yml",
                     id="accents-apostrophe-brackets"),
        pytest.param(put("contact.phone", "081234567890"), "dinkes.yml", id="phone-0"),
        pytest.param(put("contact.phone", "+6281234567890"), "dinkes.yml", id="phone-plain"),
        pytest.param(put("mail.mailboxes[0].position", "Kepala Sub Bagian Umum"), "dinkes.yml",
                     id="mailbox-position"),
        pytest.param(put("mail.mailboxes[1].local_part", "kepala.dinas_kes-1"), "dinkes.yml",
                     id="local-part-punctuation"),
        pytest.param(put("mail.aliases[0].to", ["admin", "Budi.Santoso+dinkes@Gmail.com"]),
                     "dinkes.yml", id="external-target"),
        pytest.param(put("hosting.quota", "20G"), "dinkes.yml", id="hosting-at-limit"),
        pytest.param(put("mail.mailboxes[0].quota", "10240M"), "dinkes.yml",
                     id="mailbox-at-limit"),
        pytest.param(lambda doc: None, "dinkes.yaml", id="yaml-suffix"),
        pytest.param(put("subdomain", "a1"), "a1.yml", id="two-characters"),
        pytest.param(put("subdomain", "x" * 63), "x" * 63 + ".yml", id="sixty-three"),
    ],
)
def test_good_requests(tmp_path: Path, change: Change, name: str) -> None:
    doc = request()
    change(doc)
    requests, problems = check(tmp_path, doc, name)
    assert problems == []
    assert len(requests) == 1


def test_aliases_resolve_to_full_lowercase_addresses(tmp_path: Path) -> None:
    doc = request()
    doc["mail"]["aliases"][0]["to"] = ["kepala", "Budi@Gmail.COM"]
    (req,), problems = check(tmp_path, doc)
    assert problems == []
    assert req["mail"]["aliases"][0]["to"] == [f"kepala@dinkes.{ZONE}", "budi@gmail.com"]


def test_parent_domain_addresses(tmp_path: Path) -> None:
    (req,), _ = check(tmp_path, parent_request(
        "dinkes", "dinkes", [{"local_part": "dinkes-info", "to": ["dinkes"]}]))
    assert req["mail"]["address_domain"] == ZONE
    assert req["mail"]["mailboxes"][0]["address"] == f"dinkes@{ZONE}"
    assert req["mail"]["aliases"][0]["to"] == [f"dinkes@{ZONE}"]


def test_quoted_date_and_bom_are_accepted(tmp_path: Path) -> None:
    text = "\ufeff" + CONTRACT_EXAMPLE.replace("date: 2026-11-20", 'date: "2026-11-20"')
    requests, problems = check(tmp_path, text)
    assert problems == []
    assert requests[0]["letter"]["date"] == "2026-11-20"


def test_policy_allows_a_special_local_part(tmp_path: Path) -> None:
    doc = request()
    doc["mail"]["aliases"][0]["local_part"] = "webmaster"
    _, refused = check(tmp_path, doc)
    assert only_problem(refused).field == "mail.aliases[0].local_part"
    requests, problems = check(tmp_path, doc, policy={"allowed_special_local_parts": ["webmaster"]})
    assert problems == [] and requests[0]["mail"]["aliases"][0]["local_part"] == "webmaster"


def test_other_zone(tmp_path: Path) -> None:
    (req,), _ = check(tmp_path, CONTRACT_EXAMPLE, policy={"zone": "example.go.id"})
    assert req["fqdn"] == "dinkes.example.go.id"
    assert req["mail"]["mailboxes"][0]["address"] == "admin@dinkes.example.go.id"


def test_template_is_valid_once_named_after_its_subdomain(tmp_path: Path) -> None:
    template = (REPO / "requests" / "TEMPLATE.yml.example").read_text(encoding="utf-8")
    requests, problems = check(tmp_path, template, "contoh.yml")
    assert problems == []
    assert requests[0]["subdomain"] == "contoh"


def test_readme_full_example_is_valid(tmp_path: Path) -> None:
    readme = (REPO / "requests" / "README.md").read_text(encoding="utf-8")
    example = re.findall(r"```yaml\n(.*?)```", readme, re.S)[0]
    requests, problems = check(tmp_path, example, "dinkes.yml")
    assert problems == []
    assert requests[0]["mail"]["mailboxes"][0]["position"] == "Kepala Sub Bagian Umum"


def test_folder_reads_only_request_files_sorted(tmp_path: Path) -> None:
    for label in ("dinsos", "bappeda"):
        write(tmp_path, f"{label}.yml", dump(request(subdomain=label)))
    write(tmp_path, "README.md", "# not a request")
    write(tmp_path, "TEMPLATE.yml.example", "not: [a request")
    write(tmp_path, ".hidden.yml", "not: [a request")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "dinkes.yml", "not: [a request")
    requests, problems = validate_paths([tmp_path], today=TODAY)
    assert problems == []
    assert [r["subdomain"] for r in requests] == ["bappeda", "dinsos"]


def test_a_file_given_twice_is_checked_once(tmp_path: Path) -> None:
    path = write(tmp_path, "dinkes.yml", CONTRACT_EXAMPLE)
    requests, problems = validate_paths([tmp_path, path, str(path)], today=TODAY)
    assert problems == [] and len(requests) == 1


def test_empty_folder_is_an_empty_valid_set(tmp_path: Path) -> None:
    assert validate_paths([tmp_path], today=TODAY) == ([], [])


# --- Bad requests: one mistake, one problem, with field and words -------------


@dataclass(frozen=True)
class Bad:
    change: Change
    field: str
    fragment: str
    name: str = "dinkes.yml"
    policy: dict | None = None


def bad(case_id: str, change: Change, field: str, fragment: str, **options: Any) -> Any:
    return pytest.param(Bad(change, field, fragment, **options), id=case_id)


TEXT_FIELD = "letter.subject"
FOUR_FULL_MAILBOXES = [{"local_part": f"u{i}", "holder": "A B", "quota": "10G"} for i in range(4)]
LOOP = [
    {"local_part": "info", "to": [f"halo@dinkes.{ZONE}"]},
    {"local_part": "halo", "to": [f"info@dinkes.{ZONE}"]},
]

BAD_CASES = [
    # the whole request
    bad("no-letter", drop("letter"), "letter", "is missing"),
    bad("no-subdomain", drop("subdomain"), "subdomain", "is missing"),
    bad("nothing-asked", both(drop("hosting"), drop("mail")), "", "add hosting, mail or both"),
    bad("unknown-top-field", put("catatan", "x"), "catatan", "is not a known field"),
    bad("letter-not-a-group", put("letter", ["a"]), "letter", "group of fields"),
    bad("agency-total-over-policy", lambda doc: None, "", "one agency may have at most 3G",
        policy={"max_agency_quota": "3G"}),
    bad("agency-total-over-default",
        both(put("hosting.quota", "20G"), put("mail.mailboxes", FOUR_FULL_MAILBOXES),
             drop("mail.aliases")),
        "", "asks for 60G in all"),
    # letter
    bad("no-letter-number", drop("letter.number"), "letter.number", "is missing"),
    bad("date-not-real", put("letter.date", "2026-02-30"), "letter.date", "not a real date"),
    bad("date-future", put("letter.date", datetime.date(2026, 12, 1)), "letter.date",
        "is in the future (today is 2026-11-30)"),
    bad("date-format", put("letter.date", "20-11-2026"), "letter.date", "YYYY-MM-DD"),
    bad("date-with-time", put("letter.date", datetime.datetime(2026, 11, 20, 10, 0)),
        "letter.date", "YYYY-MM-DD"),
    bad("date-number", put("letter.date", 20261120), "letter.date", "YYYY-MM-DD"),
    bad("text-empty", put(TEXT_FIELD, ""), TEXT_FIELD, "is empty"),
    bad("text-null", put(TEXT_FIELD, None), TEXT_FIELD, "has no value"),
    bad("text-newline", put(TEXT_FIELD, "Permohonan\nsubdomain"), TEXT_FIELD, "line break"),
    bad("text-leading-space", put(TEXT_FIELD, " Permohonan"), TEXT_FIELD,
        "starts or ends with a space"),
    bad("text-two-spaces", put(TEXT_FIELD, "Permohonan  subdomain"), TEXT_FIELD,
        "two spaces in a row"),
    bad("text-too-long", put(TEXT_FIELD, "a" * 121), TEXT_FIELD, "at most 120 characters"),
    bad("text-too-long-policy", put(TEXT_FIELD, "a" * 51), TEXT_FIELD, "at most 50 characters",
        policy={"max_text_length": 50}),
    bad("text-angle", put(TEXT_FIELD, "Permohonan <script>"), TEXT_FIELD,
        'contains the character "<"'),
    bad("text-dollar", put(TEXT_FIELD, "Permohonan ${HOME}"), TEXT_FIELD,
        'contains the character "$"'),
    bad("text-quote", put(TEXT_FIELD, 'Permohonan "web"'), TEXT_FIELD,
        'contains the character """'),
    bad("text-semicolon", put(TEXT_FIELD, "a; b"), TEXT_FIELD, 'contains the character ";"'),
    bad("text-backslash", put(TEXT_FIELD, "a\\b"), TEXT_FIELD, 'contains the character "\\"'),
    bad("text-tab", put(TEXT_FIELD, "a\tb"), TEXT_FIELD, "U+0009 (TAB)"),
    bad("text-bidi-override", put(TEXT_FIELD, "a\u202eb"), TEXT_FIELD, "U+202E"),
    bad("text-zero-width", put(TEXT_FIELD, "a\u200bb"), TEXT_FIELD, "U+200B (ZERO WIDTH SPACE)"),
    bad("text-no-break-space", put(TEXT_FIELD, "a\u00a0b"), TEXT_FIELD, "U+00A0"),
    bad("text-cyrillic", put(TEXT_FIELD, "Динас"), TEXT_FIELD, 'contains the character "Д"'),
    bad("text-number", put(TEXT_FIELD, 2026), TEXT_FIELD, "put it in quotes"),
    # agency
    bad("abbreviation-lowercase", put("agency.abbreviation", "Dinkes"), "agency.abbreviation",
        "capital letters"),
    bad("abbreviation-short", put("agency.abbreviation", "D"), "agency.abbreviation",
        "2 to 20 characters"),
    bad("category-unknown", put("agency.category", "dinas"), "agency.category",
        "must be one of: instansi, layanan_publik, kegiatan"),
    bad("event-without-end", put("agency.category", "kegiatan"), "agency.ends",
        "required when the category is kegiatan"),
    bad("end-without-event", put("agency.ends", "2027-03-31"), "agency.ends",
        "only for events"),
    bad("end-before-letter",
        both(put("agency.category", "kegiatan"), put("agency.ends", "2026-11-20")),
        "agency.ends", "must be after the letter's date (2026-11-20)"),
    bad("end-not-real",
        both(put("agency.category", "kegiatan"), put("agency.ends", "2027-02-29")),
        "agency.ends", "not a real date"),
    # contact
    bad("nip-unquoted", put("contact.nip", 198501012010012001), "contact.nip", "in quotes"),
    bad("nip-short", put("contact.nip", "19850101201001200"), "contact.nip", "exactly 18 digits"),
    bad("nip-spaces", put("contact.nip", "19850101 201001 2 001"), "contact.nip",
        "exactly 18 digits"),
    bad("phone-unquoted", put("contact.phone", 81234567890), "contact.phone", "in quotes"),
    bad("phone-no-prefix", put("contact.phone", "812-3456-7890"), "contact.phone",
        "starting with +62 or 0"),
    bad("phone-too-few-digits", put("contact.phone", "0812 345"), "contact.phone",
        "8 to 15 digits"),
    bad("phone-too-many-digits", put("contact.phone", "0812 3456 7890 1234"), "contact.phone",
        "8 to 15 digits"),
    bad("phone-double-dash", put("contact.phone", "0812--3456-7890"), "contact.phone",
        "single spaces or dashes"),
    bad("phone-brackets", put("contact.phone", "(0381) 21234"), "contact.phone",
        "starting with +62 or 0"),
    bad("contact-misspelt", put("contact.nmae", "Maria"), "contact.nmae", "did you mean name?"),
    # subdomain
    bad("label-uppercase", put("subdomain", "Dinkes"), "subdomain", "DNS label"),
    bad("label-one-char", put("subdomain", "d"), "subdomain", "2 to 63 characters"),
    bad("status-unknown", put("status", "paused"), "status", "must be active or suspended"),
    bad("label-too-long", put("subdomain", "x" * 64), "subdomain", "2 to 63 characters"),
    bad("label-leading-dash", put("subdomain", "-dinkes"), "subdomain", "starting or ending"),
    bad("label-punycode", put("subdomain", "xn--dinkes"), "subdomain", "positions 3-4"),
    bad("label-underscore", put("subdomain", "din_kes"), "subdomain", "DNS label"),
    bad("label-not-file-name", put("subdomain", "dinsos"), "subdomain",
        "rename the file to dinsos.yml"),
    bad("file-suffix", lambda doc: None, "subdomain", "must equal the file name",
        name="dinkes.txt"),
    bad("label-reserved", put("subdomain", "www"), "subdomain", "reserved", name="www.yml"),
    bad("label-reserved-mta-sts", put("subdomain", "mta-sts"), "subdomain", "reserved",
        name="mta-sts.yml"),
    bad("label-reserved-by-inventory", lambda doc: None, "subdomain", "the inventory reserves",
        policy={"reserved_labels": ["dinkes"]}),
    # hosting and quotas
    bad("hosting-empty", put("hosting", None), "hosting", "has no value"),
    bad("hosting-no", put("hosting", False), "hosting", "remove the hosting key"),
    bad("quota-no-unit", put("hosting.quota", 2048), "hosting.quota", "with a unit"),
    bad("quota-bytes-unit", put("hosting.quota", "2GB"), "hosting.quota", "units K, M, G, T"),
    bad("quota-zero", put("hosting.quota", "0G"), "hosting.quota", "positive"),
    bad("quota-fraction", put("hosting.quota", "1.5G"), "hosting.quota", "whole size"),
    bad("hosting-over-limit", put("hosting.quota", "21G"), "hosting.quota",
        "a hosting account may have at most 20G"),
    bad("mailbox-over-limit", put("mail.mailboxes[1].quota", "10241M"),
        "mail.mailboxes[1].quota", "a mailbox may have at most 10G"),
    bad("mailbox-over-policy", put("mail.mailboxes[0].quota", "3G"), "mail.mailboxes[0].quota",
        "at most 2G", policy={"max_mailbox_quota": "2G"}),
    # mail
    bad("mail-empty", put("mail", None), "mail", "has no value"),
    bad("mail-domain-unknown", put("mail.domain", "dinkes"), "mail.domain",
        "must be one of: subdomain, parent"),
    bad("no-mailboxes", drop("mail.mailboxes"), "mail.mailboxes", "is missing"),
    bad("mailboxes-empty", put("mail.mailboxes", []), "mail.mailboxes", "at least one mailbox"),
    bad("mailboxes-too-many",
        put("mail.mailboxes", [{"local_part": f"u{i}", "holder": "A", "quota": "1K"}
                               for i in range(201)]),
        "mail.mailboxes", "more than 200 mailboxes"),
    bad("mailbox-not-a-group", put("mail.mailboxes[0]", "admin"), "mail.mailboxes[0]",
        "group of fields"),
    bad("mailbox-no-holder", drop("mail.mailboxes[0].holder"), "mail.mailboxes[0].holder",
        "is missing"),
    bad("mailbox-password-field", put("mail.mailboxes[0].password", "rahasia"),
        "mail.mailboxes[0].password", "is not a known field"),
    bad("mailbox-position-empty", put("mail.mailboxes[0].position", ""),
        "mail.mailboxes[0].position", "is empty"),
    bad("local-part-uppercase", put("mail.mailboxes[0].local_part", "Admin"),
        "mail.mailboxes[0].local_part", "lowercase local part"),
    bad("local-part-double-dot", put("mail.mailboxes[0].local_part", "a..b"),
        "mail.mailboxes[0].local_part", "no two dots in a row"),
    bad("local-part-leading-dot", put("mail.mailboxes[0].local_part", ".admin"),
        "mail.mailboxes[0].local_part", "no dot at the start"),
    bad("local-part-too-long", put("mail.mailboxes[0].local_part", "a" * 65),
        "mail.mailboxes[0].local_part", "at most 64 characters"),
    bad("local-part-plus", put("mail.mailboxes[0].local_part", "admin+x"),
        "mail.mailboxes[0].local_part", "lowercase local part"),
    bad("local-part-yes-no", put("mail.mailboxes[1].local_part", False),
        "mail.mailboxes[1].local_part", "put it in quotes"),
    bad("local-part-postmaster", put("mail.mailboxes[1].local_part", "postmaster"),
        "mail.mailboxes[1].local_part", "mail server's own use"),
    bad("local-part-noreply-alias", put("mail.aliases[0].local_part", "noreply"),
        "mail.aliases[0].local_part", "mail server's own use"),
    bad("local-part-twice", put("mail.mailboxes[1].local_part", "admin"),
        "mail.mailboxes[1].local_part", "already used by mail.mailboxes[0]"),
    bad("alias-same-as-mailbox", put("mail.aliases[0].local_part", "kepala"),
        "mail.aliases[0].local_part", "already used by mail.mailboxes[1]"),
    # aliases
    bad("alias-no-to", drop("mail.aliases[0].to"), "mail.aliases[0].to", "is missing"),
    bad("alias-to-text", put("mail.aliases[0].to", "admin"), "mail.aliases[0].to",
        "must be a list"),
    bad("alias-to-empty", put("mail.aliases[0].to", []), "mail.aliases[0].to",
        "at least one target"),
    bad("alias-to-twice", put("mail.aliases[0].to", ["admin", "admin"]), "mail.aliases[0].to",
        "same target twice"),
    bad("alias-to-itself", put("mail.aliases[0].to", ["info"]), "mail.aliases[0].to[0]",
        "cannot forward to itself"),
    bad("alias-to-itself-address", put("mail.aliases[0].to", [f"INFO@dinkes.{ZONE}"]),
        "mail.aliases[0].to[0]", "cannot forward to itself"),
    bad("alias-to-unknown", put("mail.aliases[0].to", ["sekretariat"]), "mail.aliases[0].to[0]",
        "is not a mailbox of this request"),
    bad("alias-to-alias-local-part",
        put("mail.aliases", [{"local_part": "info", "to": ["halo"]},
                             {"local_part": "halo", "to": ["admin"]}]),
        "mail.aliases[0].to[0]", "is not a mailbox of this request"),
    bad("alias-to-bad-address", put("mail.aliases[0].to", ["someone@localhost"]),
        "mail.aliases[0].to[0]", "full address"),
    bad("alias-to-own-domain-nobody", put("mail.aliases[0].to", [f"nobody@dinkes.{ZONE}"]),
        "mail.aliases[0].to[0]", "has no mailbox or alias nobody"),
    bad("alias-to-pipe", put("mail.aliases[0].to", ["|/bin/sh"]), "mail.aliases[0].to[0]",
        "full address"),
    # hosting.database
    bad("database-quoted", put("hosting.database", "true"), "hosting.database",
        "must be true or false (without quotes)"),
    bad("database-yes-word", put("hosting.database", "ya"), "hosting.database",
        "must be true or false (without quotes)"),
    bad("database-number", put("hosting.database", 1), "hosting.database",
        "must be true or false (without quotes)"),
    bad("database-without-php", both(put("hosting.database", True), put("hosting.php", False)),
        "hosting.database", "needs PHP"),
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_request(tmp_path: Path, case: Bad) -> None:
    doc = request()
    case.change(doc)
    requests, problems = check(tmp_path, doc, case.name, case.policy)
    assert requests == []
    problem = only_problem(problems)
    assert problem.field == case.field
    assert case.fragment in problem.message
    assert problem.file == str(tmp_path / case.name)
    assert problem.line is not None  # every problem says where: file, line and field


def test_there_are_at_least_fifty_bad_cases() -> None:
    assert len(BAD_CASES) >= 50


def test_alias_loop_in_one_request(tmp_path: Path) -> None:
    _, problems = check(tmp_path, request(mail={**CONTRACT["mail"], "aliases": LOOP}))
    assert [p.field for p in problems] == ["mail.aliases[0].to", "mail.aliases[1].to"]
    assert all("forwarding loop" in p.message and f"halo@dinkes.{ZONE}" in p.message
               for p in problems)


def test_every_mistake_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    doc = request()
    doc["letter"]["date"] = "2026-12-24"
    doc["contact"]["nip"] = "123"
    doc["hosting"]["quota"] = "2 G"
    doc["mail"]["mailboxes"][1]["local_part"] = "admin"
    doc["mail"]["aliases"][0]["to"] = ["info"]
    doc["extra"] = True
    _, problems = check(tmp_path, doc)
    assert sorted(p.field for p in problems) == [
        "contact.nip", "extra", "hosting.quota", "letter.date",
        "mail.aliases[0].to[0]", "mail.mailboxes[1].local_part",
    ]


# --- Line numbers -------------------------------------------------------------


def test_problems_carry_the_line_of_their_field(tmp_path: Path) -> None:
    text = (CONTRACT_EXAMPLE.replace('nip: "198501012010012001"', "nip: 198501012010012001")
            .replace("quota: 2G", "quota: 2")
            .replace("    - local_part: kepala", "    - local_part: Kepala"))
    _, problems = check(tmp_path, text)
    lines = {p.field: p.line for p in problems}
    assert lines == {"contact.nip": 13, "hosting.quota": 18, "mail.mailboxes[1].local_part": 25}
    assert str(problems[0]).startswith(f"{tmp_path / 'dinkes.yml'}:13: contact.nip: ")


def test_a_missing_field_points_at_its_parent(tmp_path: Path) -> None:
    text = CONTRACT_EXAMPLE.replace("      holder: dr. Yohanes Bili\n", "")
    problem = only_problem(check(tmp_path, text)[1])
    assert (problem.field, problem.line) == ("mail.mailboxes[1].holder", 25)


def test_duplicate_key_is_reported_with_its_line(tmp_path: Path) -> None:
    text = CONTRACT_EXAMPLE.replace("  name: Maria Ngongo\n",
                                    "  name: Maria Ngongo\n  name: Someone Else\n")
    requests, problems = check(tmp_path, text)
    problem = only_problem(problems)
    assert requests == []
    assert (problem.field, problem.line) == ("contact.name", 13)
    assert "appears twice (first on line 12)" in problem.message


def test_duplicate_top_level_block(tmp_path: Path) -> None:
    text = CONTRACT_EXAMPLE + "hosting:\n  quota: 20G\n"
    problem = only_problem(check(tmp_path, text)[1])
    assert (problem.field, problem.line) == ("hosting", 31)
    assert "appears twice (first on line 17)" in problem.message


# --- Files that are not requests at all -----------------------------------------


@pytest.mark.parametrize(
    ("content", "fragment", "line"),
    [
        pytest.param("", "is empty", None, id="empty"),
        pytest.param("# only a comment\n", "is empty", None, id="comment-only"),
        pytest.param("- letter\n- agency\n", "must be a group of fields", 1, id="top-level-list"),
        pytest.param("just words\n", "must be a group of fields", 1, id="top-level-text"),
        pytest.param("letter: [a,\n  b\n", "is not valid YAML", 3, id="syntax-error"),
        pytest.param("letter:\n\tnumber: x\n", "is not valid YAML", 2, id="tab-indent"),
        pytest.param("a: 1\n---\nb: 2\n", "is not valid YAML", 2, id="two-documents"),
        pytest.param("a: *nothing\n", "is not valid YAML", 1, id="undefined-alias"),
        pytest.param("a: b\x00\n", "character YAML does not allow", 1, id="nul-byte"),
        pytest.param("a: 1\nb: \x1b[31m\n", "character YAML does not allow", 2, id="escape"),
        pytest.param(b"letter:\n  subject: Caf\xe9\n", "is not UTF-8 text (byte 0xE9", 2,
                     id="latin-1"),
        pytest.param(b"\xff\xfel\x00e\x00", "is not UTF-8", 1, id="utf-16"),
        pytest.param(bytes(range(256)), "byte 0x80 is not UTF-8", 2, id="binary"),
        pytest.param("a: &x [1]\nb: *x\n", "uses an alias", 2, id="alias"),
        pytest.param("[" * 200 + "]" * 200, "must be a group of fields", 1, id="deep-list"),
    ],
)
def test_not_a_request(tmp_path: Path, content: str | bytes, fragment: str,
                       line: int | None) -> None:
    requests, problems = check(tmp_path, content)
    problem = only_problem(problems)
    assert requests == []
    assert problem.field == ""
    assert fragment in problem.message
    assert problem.line == line


@pytest.mark.parametrize("depth", [20, 500, 5000])
def test_deep_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    text = CONTRACT_EXAMPLE + "extra: " + "[" * depth + "]" * depth + "\n"
    problem = only_problem(check(tmp_path, text)[1])
    assert problem.field == ""
    assert "nested too deeply" in problem.message or "is not valid YAML" in problem.message
    assert problem.line == 31


def test_billion_laughs_is_refused_without_expanding(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefghi", "bcdefghij", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    tracemalloc.start()
    try:
        requests, problems = check(tmp_path, "\n".join(lines) + "\n")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes: the aliases were expanded"
    assert requests == []
    assert "uses an alias" in only_problem(problems).message


def test_python_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = CONTRACT_EXAMPLE + (
        f'extra: !!python/object/apply:os.system ["touch {marker}"]\n'
        "more: !!python/object:collections.OrderedDict {}\n"
        "name: !!python/name:os.system\n"
    )
    requests, problems = check(tmp_path, text)
    assert not marker.exists()
    assert requests == []
    refused = {p.field: p.message for p in problems if "YAML tag" in p.message}
    assert set(refused) == {"extra", "more", "name"}
    assert '"!!python/object/apply:os.system"' in refused["extra"]


@pytest.mark.parametrize(
    "value",
    ["!!binary aGVsbG8=", "!!set {a: null}", "!!omap [a: 1]", "!!pairs [a: 1]", "!local x"],
)
def test_other_tags_are_refused(tmp_path: Path, value: str) -> None:
    text = CONTRACT_EXAMPLE.replace("subject: Permohonan pembuatan subdomain dan email dinas",
                                    f"subject: {value}")
    problem = only_problem(check(tmp_path, text)[1])
    assert (problem.field, problem.line) == ("letter.subject", 5)
    assert "YAML tag" in problem.message


@pytest.mark.parametrize(
    ("key", "shown"),
    [("<<", '"<<"'), ("? [a, b]", "that is a list"), ('"na me"', '"na me"'), ("1.5", '"1.5"')],
)
def test_strange_field_names(tmp_path: Path, key: str, shown: str) -> None:
    text = CONTRACT_EXAMPLE.replace("  name: Maria Ngongo\n", f"  name: Maria Ngongo\n  {key}: x\n")
    problem = only_problem(check(tmp_path, text)[1])
    assert (problem.field, problem.line) == ("contact", 13)
    assert f"has a field name {shown}" in problem.message


def test_size_limit_is_checked_before_reading(tmp_path: Path) -> None:
    padding = MAX_FILE_BYTES - len(CONTRACT_EXAMPLE.encode()) - 1
    exact = CONTRACT_EXAMPLE + "#" * padding + "\n"
    assert len(exact.encode()) == MAX_FILE_BYTES
    assert check(tmp_path, exact)[1] == []
    problem = only_problem(check(tmp_path, exact + "\n")[1])
    assert "at most 64 KiB" in problem.message and problem.field == ""


def test_huge_file_is_refused_without_being_opened(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dinkes.yml"
    with path.open("wb") as stream:
        stream.truncate(1 << 30)  # 1 GiB, sparse
    opened: list[Path] = []
    real_open = Path.open

    def recording_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(self)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", recording_open)
    problem = only_problem(validate_paths([path], today=TODAY)[1])
    assert "at most 64 KiB" in problem.message
    assert path not in opened  # its size is read from stat, before any read


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yml"
    problem = only_problem(validate_paths([missing], today=TODAY)[1])
    assert problem == Problem(str(missing), "", "does not exist")


def test_special_files_are_not_opened(tmp_path: Path) -> None:
    (tmp_path / "folder.yml").mkdir()  # ignored: not a file
    assert validate_paths([tmp_path], today=TODAY) == ([], [])
    os.mkfifo(tmp_path / "fifo.yml")  # reading it would block
    problem = only_problem(validate_paths([tmp_path], today=TODAY)[1])
    assert (problem.file, problem.message) == (str(tmp_path / "fifo.yml"), "is not a regular file")


# --- The set of files -----------------------------------------------------------


def parent_request(label: str, mailbox: str, aliases: list[dict] | None = None) -> dict:
    mail = {"domain": "parent",
            "mailboxes": [{"local_part": mailbox, "holder": "A B", "quota": "1G"}]}
    if aliases:
        mail["aliases"] = aliases
    return request(subdomain=label, mail=mail)


def test_parent_local_parts_are_unique_across_files(tmp_path: Path) -> None:
    write(tmp_path, "dinkes.yml", dump(parent_request("dinkes", "umum")))
    write(tmp_path, "dinsos.yml", dump(parent_request(
        "dinsos", "sekretariat", [{"local_part": "umum", "to": ["sekretariat"]}])))
    requests, problems = validate_paths([tmp_path], today=TODAY)
    assert requests == []
    assert [(Path(p.file).name, p.field) for p in problems] == [
        ("dinkes.yml", "mail.mailboxes[0].local_part"),
        ("dinsos.yml", "mail.aliases[0].local_part"),
    ]
    assert f"umum@{ZONE} is also requested by {tmp_path / 'dinsos.yml'}" in problems[0].message
    assert "unique regency-wide" in problems[1].message
    assert all(p.line is not None for p in problems)


def test_same_local_part_on_subdomains_is_fine(tmp_path: Path) -> None:
    for label in ("dinkes", "dinsos"):
        write(tmp_path, f"{label}.yml", dump(request(subdomain=label)))
    requests, problems = validate_paths([tmp_path], today=TODAY)
    assert problems == [] and len(requests) == 2


def test_subdomain_is_unique_across_files(tmp_path: Path) -> None:
    write(tmp_path, "dinkes.yml", CONTRACT_EXAMPLE)
    write(tmp_path, "dinkes.yaml", CONTRACT_EXAMPLE)
    other = tmp_path / "other"
    other.mkdir()
    write(other, "dinkes.yml", CONTRACT_EXAMPLE)
    requests, problems = validate_paths([tmp_path, other], today=TODAY)
    assert requests == []
    assert len(problems) == 3
    assert all(p.field == "subdomain" and "is also requested by" in p.message for p in problems)


def test_alias_loop_across_files(tmp_path: Path) -> None:
    write(tmp_path, "dinkes.yml", dump(parent_request(
        "dinkes", "umum", [{"local_part": "kabar", "to": [f"halo@{ZONE}"]}])))
    write(tmp_path, "dinsos.yml", dump(parent_request(
        "dinsos", "kepala", [{"local_part": "halo", "to": [f"KABAR@{ZONE}", "kepala"]}])))
    requests, problems = validate_paths([tmp_path], today=TODAY)
    assert requests == []
    assert [(Path(p.file).name, p.field) for p in problems] == [
        ("dinkes.yml", "mail.aliases[0].to"), ("dinsos.yml", "mail.aliases[0].to")]
    assert all(f"halo@{ZONE}, kabar@{ZONE} forward to each other" in p.message for p in problems)


def test_alias_chain_across_files_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "dinkes.yml", dump(parent_request(
        "dinkes", "umum", [{"local_part": "kabar", "to": [f"halo@{ZONE}"]}])))
    write(tmp_path, "dinsos.yml", dump(parent_request(
        "dinsos", "kepala", [{"local_part": "halo", "to": ["kepala"]}])))
    requests, problems = validate_paths([tmp_path], today=TODAY)
    assert problems == [] and len(requests) == 2


def test_problems_are_sorted_by_file_then_line(tmp_path: Path) -> None:
    bad = CONTRACT_EXAMPLE.replace("quota: 2G", "quota: 2").replace("DINKES  ", "dinkes  ")
    for label in ("b", "a"):
        write(tmp_path, f"{label}{label}.yml", bad.replace("subdomain: dinkes",
                                                           f"subdomain: {label}{label}"))
    problems = validate_paths([tmp_path], today=TODAY)[1]
    assert [(Path(p.file).name, p.line) for p in problems] == [
        ("aa.yml", 8), ("aa.yml", 18), ("bb.yml", 8), ("bb.yml", 18)]


def test_500_files_are_validated(tmp_path: Path) -> None:
    for number in range(500):
        label = f"dinas{number:03d}"
        write(tmp_path, f"{label}.yml", CONTRACT_EXAMPLE.replace("subdomain: dinkes",
                                                                 f"subdomain: {label}"))
    requests, problems = validate_paths([tmp_path], today=TODAY)  # speed: scripts/bench
    assert problems == [] and len(requests) == 500


# --- Problem, sizes, policy -----------------------------------------------------


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        (Problem("r/a.yml", "mail.mailboxes[1].quota", "is 11G", 24),
         "r/a.yml:24: mail.mailboxes[1].quota: is 11G"),
        (Problem("r/a.yml", "contact", "is missing"), "r/a.yml: contact: is missing"),
        (Problem("r/a.yml", "", "is empty"), "r/a.yml: is empty"),
        (Problem("r/a.yml", "", "is not valid YAML", 3), "r/a.yml:3: is not valid YAML"),
    ],
)
def test_problem_text(problem: Problem, text: str) -> None:
    assert str(problem) == text


@pytest.mark.parametrize(
    ("text", "size"),
    [("1K", 1024), ("500M", 500 * 1024**2), ("2G", 2 * 1024**3), ("1T", 1024**4),
     ("1536M", 1536 * 1024**2)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size
    assert parse_size(format_size(size)) == size


@pytest.mark.parametrize("text", ["", "2", "2g", "2GB", "0G", "-1G", "1.5G", " 2G", "G", 2])
def test_parse_size_refuses(text: Any) -> None:
    with pytest.raises(ValueError, match="not a positive size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "text"),
    [(2 * 1024**3, "2G"), (1536 * 1024**2, "1536M"), (1024**4, "1T"), (1000, "1000B"), (0, "0B")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=1, max_value=2**50))
def test_format_then_parse_size_round_trips(kib: int) -> None:
    assert parse_size(format_size(kib * 1024)) == kib * 1024


@pytest.mark.parametrize(
    ("policy", "fragment"),
    [
        ({"max_mailbox_qouta": "1G"}, "unknown request policy key(s): max_mailbox_qouta"),
        ({"max_hosting_quota": "lots"}, "max_hosting_quota"),
        ({"reserved_labels": "lab"}, "reserved_labels: must be a list"),
        ({"zone": "Example"}, "zone: must be a lowercase domain"),
        ({"max_text_length": 0}, "max_text_length"),
    ],
)
def test_invalid_policy_raises(tmp_path: Path, policy: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        validate_paths([tmp_path], policy, today=TODAY)


# --- Schema and documentation agree ----------------------------------------------


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def schema_fields(node: dict, defs: dict, prefix: str = "") -> list[str]:
    """Dotted names of every field the schema knows, lists written ``name[]``."""
    node = defs[node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node
    names = []
    for name, sub in node.get("properties", {}).items():
        dotted = f"{prefix}{name}"
        names.append(dotted)
        items = sub.get("items")
        if items and "properties" in defs.get(items.get("$ref", "").rsplit("/", 1)[-1], {}):
            names += schema_fields(items, defs, f"{dotted}[].")
        else:
            names += schema_fields(sub, defs, f"{dotted}.")
    return names


def test_schema_is_a_valid_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_contract_example_passes_the_bare_schema() -> None:
    doc = json.loads(json.dumps(CONTRACT, default=str))
    validator = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert list(validator.iter_errors(doc)) == []


def test_schema_reserved_labels_are_the_contract_list() -> None:
    assert set(schema()["$defs"]["label"]["not"]["enum"]) == CONTRACT_RESERVED_LABELS


def test_every_schema_field_is_documented_in_the_readme() -> None:
    readme = (REPO / "requests" / "README.md").read_text(encoding="utf-8")
    fields = schema_fields(schema(), schema()["$defs"])
    assert "mail.mailboxes[].position" in fields
    assert [name for name in fields if f"| `{name}` |" not in readme] == []


def test_readme_names_the_special_local_parts() -> None:
    readme = (REPO / "requests" / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in CONTRACT_SPECIAL_LOCAL_PARTS)
    assert all(f"`{name}`" in readme for name in CONTRACT_RESERVED_LABELS)


# --- Property-based: no input makes validation raise -------------------------------

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.dates(), st.datetimes(), st.sampled_from(["admin", "2G", "kegiatan", "parent", "info"]),
)
keys = st.one_of(st.sampled_from(["letter", "mail", "mailboxes", "to", "local_part", "quota",
                                  "domain", "aliases", "ends", "date"]),
                 st.text(max_size=8), st.integers())
structures = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(keys, children, max_size=4)),
    max_leaves=20,
)
FIELD_PATHS = [
    "letter", "letter.date", "agency", "agency.category", "contact.nip", "subdomain", "hosting",
    "hosting.quota", "mail", "mail.domain", "mail.mailboxes", "mail.mailboxes[0]",
    "mail.mailboxes[1].local_part", "mail.aliases", "mail.aliases[0].to", "mail.aliases[0].to[0]",
]


def assert_result_shape(result: tuple[list[dict], list[Problem]]) -> None:
    requests, problems = result
    json.dumps(requests)
    assert all(isinstance(p, Problem) and isinstance(str(p), str) for p in problems)


@FUZZ
@given(content=st.binary(max_size=2000))
def test_any_bytes_never_raise(tmp_path: Path, content: bytes) -> None:
    assert_result_shape(check(tmp_path, content))


@FUZZ
@given(content=st.text(max_size=2000))
def test_any_text_never_raises(tmp_path: Path, content: str) -> None:
    assert_result_shape(check(tmp_path, content.encode("utf-8", "surrogatepass")))


@FUZZ
@given(line=st.integers(min_value=0, max_value=30),
       junk=st.text(alphabet=st.sampled_from(list("-:?[]{}&*!|>'\"%@`#,. \n\taZ09")), max_size=12))
def test_yaml_junk_inside_a_request_never_raises(tmp_path: Path, line: int, junk: str) -> None:
    lines = CONTRACT_EXAMPLE.splitlines(keepends=True)
    lines.insert(line, junk + "\n")
    assert_result_shape(check(tmp_path, "".join(lines)))


@FUZZ
@given(path=st.sampled_from(FIELD_PATHS), value=structures)
def test_any_structure_at_any_field_never_raises(tmp_path: Path, path: str, value: Any) -> None:
    doc = request()
    put(path, value)(doc)
    assert_result_shape(check(tmp_path, dump(doc)))


@FUZZ
@given(doc=structures)
def test_any_structure_as_the_document_never_raises(tmp_path: Path, doc: Any) -> None:
    assert_result_shape(check(tmp_path, dump(doc)))


# --- Property-based: the validator bites ------------------------------------------

# Junk that no field of the contract accepts: a group of unknown fields, or a
# list of lists (every field is a group, a list of groups or text, or a scalar).
junk_values = st.one_of(
    st.dictionaries(st.from_regex(r"zz[a-z]{1,6}", fullmatch=True), scalars, min_size=1,
                    max_size=3),
    st.lists(st.lists(scalars, max_size=2), min_size=1, max_size=3),
)


def names(problem: Problem, path: str) -> bool:
    return problem.field == path or problem.field.startswith((f"{path}.", f"{path}["))


@FUZZ
@given(path=st.sampled_from(FIELD_PATHS), junk=junk_values)
def test_junk_at_a_field_is_a_problem_naming_that_field(tmp_path: Path, path: str,
                                                        junk: Any) -> None:
    doc = request()
    put(path, junk)(doc)
    requests, problems = check(tmp_path, dump(doc))
    assert requests == []
    assert any(names(problem, path) for problem in problems), (path, problems)


SPECIAL = {"postmaster", "abuse", "root", "hostmaster", "webmaster", "noreply"}
labels = st.from_regex(r"[a-z][a-z0-9]{1,12}", fullmatch=True).filter(
    lambda label: label not in CONTRACT_RESERVED_LABELS)
local_parts = st.from_regex(r"[a-z][a-z0-9]{0,8}(?:[._-][a-z0-9]{1,6})?", fullmatch=True).filter(
    lambda part: part not in SPECIAL | set(CONTRACT_SPECIAL_LOCAL_PARTS))
words = st.from_regex(r"[A-Z][a-z]{1,10}(?: [A-Z][a-z]{1,10}){0,3}", fullmatch=True)
sizes = st.builds(lambda n, unit: f"{n}{unit}", st.integers(1, 1024), st.sampled_from("KM"))


@st.composite
def valid_requests(draw: st.DrawFn) -> dict:
    """A request the contract allows, drawn from the rules of request-format.md."""
    letter_date = draw(st.dates(datetime.date(2020, 1, 1), TODAY))
    category = draw(st.sampled_from(["instansi", "layanan_publik", "kegiatan"]))
    agency = {"name": draw(words), "abbreviation": draw(st.from_regex(r"[A-Z]{2,8}",
                                                                      fullmatch=True)),
              "category": category}
    if category == "kegiatan":
        agency["ends"] = letter_date + datetime.timedelta(days=draw(st.integers(1, 900)))
    doc = {
        "letter": {"number": draw(st.from_regex(r"[0-9]{3}\.[0-9]/[0-9]{1,4}/[A-Z]{2,8}/2026",
                                                fullmatch=True)),
                   "date": letter_date, "subject": draw(words)},
        "agency": agency,
        "contact": {"name": draw(words), "nip": draw(st.from_regex(r"[0-9]{18}", fullmatch=True)),
                    "position": draw(words),
                    "phone": draw(st.from_regex(r"(?:\+62|0)8[0-9]{2}[ -]?[0-9]{4}[ -]?[0-9]{3}",
                                                fullmatch=True))},
        "subdomain": draw(labels),
    }
    parts = st.sampled_from(["hosting", "mail", "both"])
    which = draw(parts)
    if which in ("hosting", "both"):
        doc["hosting"] = {"quota": draw(sizes)}
    if which in ("mail", "both"):
        used = draw(st.lists(local_parts, min_size=1, max_size=6, unique=True))
        boxes = used[:max(1, len(used) // 2)]
        doc["mail"] = {
            "domain": draw(st.sampled_from(["subdomain", "parent"])),
            "mailboxes": [{"local_part": part, "holder": draw(words), "quota": draw(sizes)}
                          for part in boxes],
        }
        aliases = [{"local_part": part, "to": [draw(st.sampled_from(boxes))]}
                   for part in used[len(boxes):]]
        if aliases:
            doc["mail"]["aliases"] = aliases
    return doc


@FUZZ
@given(doc=valid_requests())
def test_valid_requests_are_accepted(tmp_path: Path, doc: dict) -> None:
    for old in tmp_path.glob("*.yml"):
        old.unlink()
    requests, problems = check(tmp_path, dump(doc), name=f"{doc['subdomain']}.yml")
    assert problems == []
    (accepted,) = requests
    assert accepted["subdomain"] == doc["subdomain"]
    assert accepted["fqdn"] == f"{doc['subdomain']}.{ZONE}"
    assert bool(accepted.get("hosting")) == ("hosting" in doc)
    if "mail" in doc:
        assert [box["local_part"] for box in accepted["mail"]["mailboxes"]] == [
            box["local_part"] for box in doc["mail"]["mailboxes"]]


@FUZZ
@given(path=st.sampled_from(FIELD_PATHS), value=structures)
def test_the_same_input_always_gives_the_same_problems(tmp_path: Path, path: str,
                                                        value: Any) -> None:
    doc = request()
    put(path, value)(doc)
    text = dump(doc)
    first = [str(problem) for problem in check(tmp_path, text)[1]]
    again = [str(problem) for problem in check(tmp_path, text)[1]]
    elsewhere = tmp_path / "again"
    elsewhere.mkdir(exist_ok=True)
    moved = [str(problem).replace(str(elsewhere), str(tmp_path))
             for problem in check(elsewhere, text)[1]]
    assert first == again == moved
