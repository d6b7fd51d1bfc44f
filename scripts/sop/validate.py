"""Validation of request files: the one place that decides whether a request is valid.

`sop validate`, the pull-request check and the playbook (through the
``sop_requests`` filter) all call :func:`validate_paths`, so they can never
disagree. The contract is ``requests/README.md``; the shape of a request is
``schema/request.schema.json``. Each file goes through four steps, and every
problem of every step is reported, each with file, field and line:

1. read: the size is checked before reading, the bytes must be UTF-8;
2. parse: :class:`RequestLoader` composes the YAML safely and refuses what a
   request never needs (duplicate keys, tags, aliases, control characters),
   remembering the line of every field;
3. shape: the JSON Schema (types, required and unknown fields, formats);
4. rules: what needs several fields or the inventory's policy (file name,
   dates, quota limits, local parts, alias targets).

Then the files are checked as one set: unique subdomains, unique local parts
on the parent domain, no alias loops. Bad input never raises; only an invalid
*policy* (a configuration error of the inventory) raises ``ValueError``.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import functools
import json
import os
import re
import stat
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError

from .model import _MAX_USERNAME as MAX_USERNAME
from .model import HOSTING_PREFIX, hosting_username

FieldPath = tuple[str | int, ...]

MAX_FILE_BYTES = 64 * 1024
# A request is six levels deep (mail.aliases[0].to[0]); deeper is never a request.
MAX_DEPTH = 12
REQUEST_SUFFIXES = (".yml", ".yaml")
SCHEMA_PATH = Path(__file__).with_name("schema") / "request.schema.json"

CONTRACT_RESERVED_LABELS: frozenset[str] = frozenset(
    {
        "www", "mail", "smtp", "imap", "pop", "pop3", "webmail", "ns", "ns1", "ns2",
        "autoconfig", "autodiscover", "mta-sts", "ftp", "admin", "localhost",
    }
)
CONTRACT_SPECIAL_LOCAL_PARTS: frozenset[str] = frozenset(
    {"postmaster", "abuse", "root", "hostmaster", "webmaster", "noreply"}
)
# Local parts no request may take on the parent domain (issue 16): whoever
# holds them controls the whole zone. RFC 2142's role addresses, the CA/Browser
# Forum's domain-control addresses (a certificate for *.<zone> is issued to
# admin@ or administrator@<zone>), the mail system's own, and common others.
PARENT_RESERVED_LOCAL_PARTS: frozenset[str] = frozenset(
    {
        # RFC 2142
        "info", "marketing", "sales", "support", "abuse", "noc", "security",
        "postmaster", "hostmaster", "usenet", "news", "webmaster", "www", "uucp", "ftp",
        # CA/Browser Forum Baseline Requirements 3.2.2.4.4
        "admin", "administrator",
        # The mail system's own
        "mailer-daemon", "root", "noreply", "no-reply", "nobody", "dmarc", "dkim",
        "ssl-admin", "security-alert",
    }
)
# Inventory variables whose addresses (local@<zone>) and host names
# (<label>.<zone>) no request may take: see inventory_policy().
INVENTORY_NAME_VARIABLES: tuple[str, ...] = (
    "sop_zone_base_records", "sop_nameservers", "sop_hostmaster", "sop_mail_hostname",
    "sop_mail_dns", "sop_letterhead", "sop_administrator", "sop_mail_client", "sop_sftp",
    "sop_web_cname", "sop_dns_tsig_key_name", "nginx_acme_email",
)
# ns1, ns2, ... whether the inventory lists them yet or not.
_NAMESERVER_LABEL_RE = re.compile(r"ns[0-9]+")
# The shape of a shortened hosting account name's label part (model.hosting_username):
# a label of this shape could be given the account of a long label.
_SHORTENED_ACCOUNT_RE = re.compile(r".*-[0-9a-f]{8}")
DEFAULT_POLICY: dict[str, Any] = {
    "zone": "sumbabaratdayakab.go.id",
    "reserved_labels": [],
    # Local parts on the parent domain the inventory itself uses (inventory_policy).
    "reserved_local_parts": [],
    "allowed_special_local_parts": [],
    "max_mailbox_quota": "10G",
    "max_hosting_quota": "20G",
    "max_agency_quota": "50G",
    "max_text_length": 120,
}

_SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"([1-9][0-9]*)([KMGT])")
_DOMAIN_RE = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_FIELD_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_CONTROL_NAMES = {"\t": "TAB", "\x00": "NUL", "\x1b": "ESCAPE", "\x7f": "DELETE"}
_TYPE_WORDS = {
    "object": "a group of fields (indented key: value lines)",
    "array": "a list (lines starting with '- ', or [a, b])",
    "string": "text",
}


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one request file, in words an administrator understands."""

    file: str
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        """``file:line: field: message`` on one line, whatever the file name or value."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = f"{self.field}: {self.message}" if self.field else self.message
        return _one_line(f"{where}: {what}")


def _escape_char(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _one_line(text: str) -> str:
    """``text`` with every unprintable character (line breaks too) written as an escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


# --- Sizes ------------------------------------------------------------------


def parse_size(text: str) -> int:
    """Bytes of a size such as ``"2G"``: a positive whole number and a binary unit K, M, G, T."""
    match = _SIZE_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a positive size with a unit K, M, G or T: {text!r}")
    return int(match[1]) * _SIZE_UNITS[match[2]]


def format_size(n: int) -> str:
    """Display form of a byte count in its largest exact unit: ``2147483648`` -> ``"2G"``.

    Inverse of :func:`parse_size` for positive multiples of 1024; any other
    count is shown in bytes (``"1000B"``, ``"0B"``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"not a byte count: {n!r}")
    for unit, factor in reversed(_SIZE_UNITS.items()):
        if n and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"


# --- Policy -----------------------------------------------------------------


@dataclass(frozen=True)
class _Policy:
    """The inventory's policy, checked and converted once per run."""

    zone: str
    reserved_labels: frozenset[str]
    parent_reserved_local_parts: frozenset[str]
    special_local_parts: frozenset[str]  # the contract's, minus those the inventory allows
    max_mailbox_quota: int
    max_hosting_quota: int
    max_agency_quota: int
    max_text_length: int


def _policy_zone(value: object) -> str:
    if not isinstance(value, str) or not _DOMAIN_RE.fullmatch(value):
        raise ValueError("must be a lowercase domain name such as sumbabaratdayakab.go.id")
    return value


def _policy_names(value: object) -> frozenset[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError("must be a list of names")
    names = list(value)
    if not all(isinstance(name, str) for name in names):
        raise ValueError("must be a list of names")
    return frozenset(names)


def _policy_length(value: object) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a positive whole number")
    return value


def _resolve_policy(policy: Mapping[str, Any] | None) -> _Policy:
    """DEFAULT_POLICY overlaid with ``policy``; ``ValueError`` names a bad key."""
    merged = {**DEFAULT_POLICY, **(policy or {})}
    unknown = sorted(set(merged) - set(DEFAULT_POLICY))
    if unknown:
        raise ValueError(f"unknown request policy key(s): {', '.join(map(str, unknown))}")

    def checked(key: str, convert: Callable[[Any], Any]) -> Any:
        try:
            return convert(merged[key])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"request policy {key}: {exc}") from exc

    return _Policy(
        zone=checked("zone", _policy_zone),
        reserved_labels=CONTRACT_RESERVED_LABELS | checked("reserved_labels", _policy_names),
        parent_reserved_local_parts=PARENT_RESERVED_LOCAL_PARTS
        | checked("reserved_local_parts", _policy_names),
        special_local_parts=CONTRACT_SPECIAL_LOCAL_PARTS
        - checked("allowed_special_local_parts", _policy_names),
        max_mailbox_quota=checked("max_mailbox_quota", parse_size),
        max_hosting_quota=checked("max_hosting_quota", parse_size),
        max_agency_quota=checked("max_agency_quota", parse_size),
        max_text_length=checked("max_text_length", _policy_length),
    )


# --- Small helpers ----------------------------------------------------------


def _dotted(path: Iterable[str | int]) -> str:
    """``("mail", "mailboxes", 1, "quota")`` -> ``"mail.mailboxes[1].quota"``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _char_name(char: str) -> str:
    name = unicodedata.name(char, "") or _CONTROL_NAMES.get(char, "")
    return f"U+{ord(char):04X} ({name})" if name else f"U+{ord(char):04X}"


def _describe_char(char: str) -> str:
    if char.isprintable() and not char.isspace():
        return f'the character "{char}"'
    return f"the invisible character {_char_name(char)}"


def _unprintable(text: str) -> str | None:
    """Why ``text`` cannot be a value (line break, control character), or None."""
    if text.isprintable():
        return None
    char = next(c for c in text if not c.isprintable())
    if char in _LINE_BREAKS:
        return "must be on one line, but it contains a line break"
    return f"contains {_describe_char(char)}"


def _show(value: object, limit: int = 40) -> str:
    """A user's value quoted for a message, shortened and with nothing unprintable."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text) + '"'


# --- Parsing ----------------------------------------------------------------

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML = "tag:yaml.org,2002:"
_MAP_TAG = _YAML + "map"
_SCALAR_TAGS = frozenset(_YAML + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
# The tags a request may use (all implicit): plain mappings, lists and scalars.
_PLAIN_TAGS: dict[type[yaml.Node], frozenset[str]] = {
    yaml.MappingNode: frozenset({_MAP_TAG}),
    yaml.SequenceNode: frozenset({_YAML + "seq"}),
    yaml.ScalarNode: _SCALAR_TAGS,
}


class _NotARequest(Exception):
    """The document cannot be read as a request at all."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class _Issue:
    """A problem the loader found at a field."""

    path: FieldPath
    message: str
    line: int | None = None
    unusable: bool = True  # the value must not be checked any further


def _line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _nearest_line(lines: Mapping[FieldPath, int], path: FieldPath) -> int | None:
    """Line of the field at ``path``, or of its nearest parent that has one.

    The document itself (path ``()``) has the line of its first field, so a
    missing top-level field or a problem of the whole request has a line too.
    """
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_YAML) if tag.startswith(_YAML) else tag


class RequestLoader(_BaseLoader):  # type: ignore[misc]
    """Safe YAML loading of one request, keeping what validation needs.

    The node graph is composed by PyYAML's safe loader (libyaml when present)
    and converted here rather than by the constructor, so that the loader:

    - records the line of every field (:attr:`lines`, keyed by field path);
    - reports a duplicate key with its line instead of keeping the last value;
    - refuses a document with an alias (``*name``): a request never needs one,
      and stopping at the first stops an alias-expansion bomb before it expands;
      likewise a document nested deeper than any request;
    - refuses every tag but the plain ones (``!!python/object``, ``!!binary``,
      ``!!set``, ...) and values with control characters or line breaks;
    - turns dates into ISO text, so the result is plain JSON-like data.

    Problems with single fields are collected in :attr:`issues`; a document
    that is not a request at all raises :class:`_NotARequest` or ``yaml.YAMLError``.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.lines: dict[FieldPath, int] = {}
        self.issues: list[_Issue] = []
        self._visited: set[int] = set()

    def load_request(self) -> dict[str, Any]:
        try:
            node = self.get_single_node()
        finally:
            self.dispose()
        if node is None:
            raise _NotARequest("is empty")
        if not (isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG):
            raise _NotARequest(
                "must be a group of fields (key: value lines), starting with letter:",
                _line_of(node),
            )
        self.lines[()] = _line_of(node)
        return self._mapping(node, (), 0)

    def _value(self, node: yaml.Node, path: FieldPath, depth: int) -> Any:
        """The value of ``node``; None (with an issue) when it is refused."""
        if id(node) in self._visited:  # the composer shares one node for an alias
            raise _NotARequest("uses an alias (*name); request files may not repeat values "
                               "with anchors and aliases: write each value out",
                               _nearest_line(self.lines, path))
        if depth > MAX_DEPTH:
            raise _NotARequest(f"is nested too deeply (more than {MAX_DEPTH} levels)",
                               _line_of(node))
        if node.tag not in _PLAIN_TAGS.get(type(node), ()):
            tag = _show(_short_tag(node.tag))
            self.issues.append(_Issue(path, f"uses the YAML tag {tag}, which request files "
                                            "may not use"))
            return None
        self._visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node, path, depth)
        return self._scalar(node, path)

    def _scalar(self, node: yaml.ScalarNode, path: FieldPath) -> Any:
        try:
            value = self.construct_object(node)
        except (ValueError, ArithmeticError, yaml.YAMLError):
            value = node.value  # e.g. 2026-02-30: looks like a date but is none
        if isinstance(value, datetime.date):  # also datetime.datetime
            return value.isoformat()
        if isinstance(value, str) and (flaw := _unprintable(value)):
            self.issues.append(_Issue(path, flaw))
        return value

    def _sequence(self, node: yaml.SequenceNode, path: FieldPath, depth: int) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            if id(item) not in self._visited:  # an alias's mark is its anchor's
                self.lines[path + (index,)] = _line_of(item)
            items.append(self._value(item, path + (index,), depth + 1))
        return items

    def _mapping(self, node: yaml.MappingNode, path: FieldPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is None:
                continue
            child = path + (key,)
            if key in result:
                self.issues.append(
                    _Issue(child, f"appears twice (first on line {self.lines[child]}); keep one",
                           _line_of(key_node), unusable=False)
                )
                continue
            self.lines[child] = _line_of(key_node)
            result[key] = self._value(value_node, child, depth + 1)
        return result

    def _key(self, node: yaml.Node, path: FieldPath) -> str | None:
        """The field name of a key node, or None (reported) when it is no field name.

        The key's own text is the name, so ``yes:`` or ``1:`` become unknown
        fields "yes" and "1" rather than a boolean or a number.
        """
        if isinstance(node, yaml.ScalarNode):
            if node.tag in _SCALAR_TAGS and _FIELD_NAME_RE.fullmatch(node.value):
                return node.value
            shown = _show(node.value)
        else:
            shown = "that is a list or a group"
        self.issues.append(
            _Issue(path, f"has a field name {shown}, which is not a known field",
                   _line_of(node), unusable=False)
        )
        return None


# --- One file ---------------------------------------------------------------


@dataclass
class _Checked:
    """One request file while it is checked: its data, lines and problems.

    A field with a problem is *unusable*: later checks skip it (and everything
    under it), so each mistake is reported once, by the most basic check.
    """

    file: str
    name: str
    data: dict[str, Any] | None = None
    lines: dict[FieldPath, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    unusable: set[FieldPath] = field(default_factory=set)
    # Facts for the checks across the set of files:
    parent_local_parts: list[tuple[str, FieldPath]] = field(default_factory=list)
    forwards: list[tuple[str, FieldPath, list[str]]] = field(default_factory=list)

    def report(self, path: FieldPath, message: str, *, line: int | None = None,
               unusable: bool = True) -> None:
        self.problems.append(Problem(self.file, _dotted(path), message, line or self.line(path)))
        if unusable:
            self.unusable.add(path)

    def line(self, path: FieldPath) -> int | None:
        return _nearest_line(self.lines, path)

    def usable(self, path: FieldPath) -> bool:
        return not any(path[:end] in self.unusable for end in range(len(path) + 1))

    def get(self, *path: str | int) -> Any:
        """The value at ``path``, or None when it is missing or has a problem already."""
        if self.data is None or not self.usable(path):
            return None
        value: Any = self.data
        for part in path:
            if isinstance(part, int):
                if not isinstance(value, list) or part >= len(value):
                    return None
            elif not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value


def _read_text(chk: _Checked, path: Path) -> str | None:
    """The file's text; the size is checked before a byte is read."""
    too_big = f"is larger than a request file may be: at most 64 KiB ({MAX_FILE_BYTES} bytes)"
    try:
        if path.is_symlink():  # a link could point a pull request's check at any file
            chk.report((), "is a symbolic link; a request must be a plain file")
            return None
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            chk.report((), "is not a regular file")
            return None
        if info.st_size > MAX_FILE_BYTES:
            chk.report((), too_big)
            return None
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        chk.report((), "does not exist")
        return None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        chk.report((), f"cannot be read: {getattr(exc, 'strerror', None) or exc}")
        return None
    if len(raw) > MAX_FILE_BYTES:
        chk.report((), too_big)
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        chk.report((), f"is not UTF-8 text (byte 0x{raw[exc.start]:02X} is not UTF-8); "
                       "save it as UTF-8", line=raw.count(b"\n", 0, exc.start) + 1)
        return None


def _parse(chk: _Checked, text: str) -> dict[str, Any] | None:
    """The document as plain data; problems are reported on ``chk``."""
    loader = RequestLoader(text)
    try:
        data = loader.load_request()
    except _NotARequest as exc:
        chk.report((), exc.message, line=exc.line)
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        chk.report((), f"is not valid YAML: {exc.problem or exc.context}",
                   line=mark.line + 1 if mark else None)
        return None
    except yaml.reader.ReaderError as exc:
        chk.report((), f"contains a character YAML does not allow ({exc.reason})",
                   line=text.count("\n", 0, exc.position) + 1)
        return None
    except yaml.YAMLError as exc:
        chk.report((), f"is not valid YAML: {exc}")
        return None
    except RecursionError:
        chk.report((), "is nested too deeply")
        return None
    chk.lines = loader.lines
    for issue in loader.issues:
        chk.report(issue.path, issue.message, line=issue.line, unusable=issue.unusable)
    return data


# --- Shape: the JSON Schema ---------------------------------------------------


@functools.cache
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=8)
def _validator(max_text_length: int) -> Draft202012Validator:
    """The schema's validator, with the inventory's limit on text length."""
    schema = copy.deepcopy(_schema())
    schema["$defs"]["text"]["maxLength"] = max_text_length
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _first_refused(pattern: str, text: str) -> str:
    """The first character of ``text`` that a character-list pattern (``^[...]*$``) refuses."""
    char = next((c for c in text if not re.search(pattern, c)), None)
    return _describe_char(char) if char else "a character"


def _schema_message(error: ValidationError) -> str | None:
    """The message the schema gives for this error (``errorMessage``), if any."""
    spec = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    if isinstance(spec, dict):
        spec = spec.get(error.validator)
    if not isinstance(spec, str):
        return None
    message = spec.replace("{limit}", str(error.validator_value))
    if "{bad}" in message:
        message = message.replace("{bad}", _first_refused(error.validator_value, error.instance))
    return message


def _default_message(error: ValidationError) -> str:
    kind, value = error.validator, error.validator_value
    if kind == "type" and isinstance(value, str):
        return f"must be {_TYPE_WORDS.get(value, value)}"
    if kind == "enum":
        return "must be one of: " + ", ".join(map(str, value))
    if kind == "minItems":
        return f"must list at least {value}"
    if kind == "maxItems":
        return f"may list at most {value}"
    if kind == "uniqueItems":
        return "lists the same entry twice"
    return error.message


def _unknown_field(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]}?" if close else "the fields here are " + ", ".join(known)
    return f"is not a known field; {hint}"


def _explain(error: ValidationError) -> Iterator[tuple[FieldPath, str]]:
    """Field paths and plain-English messages for one schema error."""
    path = tuple(error.absolute_path)
    if error.validator == "required":
        message = _schema_message(error) or "is missing"
        for name in error.validator_value:
            if name not in error.instance:
                yield path + (name,), message
    elif error.validator == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        for name in sorted(set(error.instance) - set(known)):
            yield path + (name,), _unknown_field(name, known)
    elif error.validator == "type" and error.instance is None:
        yield path, "has no value"
    else:
        yield path, _schema_message(error) or _default_message(error)


def _check_shape(chk: _Checked, policy: _Policy) -> None:
    for error in _validator(policy.max_text_length).iter_errors(chk.data):
        for path, message in _explain(error):
            if chk.usable(path):
                chk.report(path, message, unusable=bool(path))


# --- Rules: what needs several fields or the policy ---------------------------


def _as_date(value: object) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _as_size(value: object) -> int | None:
    try:
        return parse_size(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _check_subdomain(chk: _Checked, policy: _Policy) -> None:
    label = chk.get("subdomain")
    if label is None:
        return
    if chk.name not in {label + suffix for suffix in REQUEST_SUFFIXES}:
        chk.report(("subdomain",), f"must equal the file name: rename the file to {label}.yml, "
                                   "or correct the subdomain")
    elif label in policy.reserved_labels or _NAMESERVER_LABEL_RE.fullmatch(label):
        chk.report(("subdomain",), "is a name the inventory reserves (a name of the zone "
                                   "itself, its servers or its name servers) and cannot be "
                                   "given to an agency")
    elif _SHORTENED_ACCOUNT_RE.fullmatch(label) and len(HOSTING_PREFIX + label) <= MAX_USERNAME:
        chk.report(("subdomain",), "ends in '-' and 8 hexadecimal digits, the shape of a long "
                                   "label's shortened hosting account name; choose a label "
                                   "that does not end so")


def _check_dates(chk: _Checked, today: datetime.date) -> None:
    sent = _as_date(chk.get("letter", "date"))
    if sent and sent > today:
        chk.report(("letter", "date"), f"is in the future (today is {today.isoformat()})")
    ends = _as_date(chk.get("agency", "ends"))
    if sent and ends and ends <= sent:
        chk.report(("agency", "ends"), f"must be after the letter's date ({sent.isoformat()})")


def _check_quotas(chk: _Checked, policy: _Policy) -> None:
    """Each quota within its limit, and all of them within the agency's limit."""
    data = chk.data or {}
    wanted: list[tuple[FieldPath, int, str]] = []
    if "hosting" in data:
        wanted.append((("hosting", "quota"), policy.max_hosting_quota, "a hosting account"))
    boxes = chk.get("mail", "mailboxes")
    if isinstance(boxes, list):
        wanted += [(("mail", "mailboxes", i, "quota"), policy.max_mailbox_quota, "a mailbox")
                   for i in range(len(boxes))]
    total, complete = 0, "mail" not in data or isinstance(boxes, list)
    for path, limit, what in wanted:
        size = _as_size(chk.get(*path))
        if size is None:
            complete = False
            continue
        total += size
        if size > limit:
            chk.report(path, f"is {format_size(size)}; {what} may have at most "
                             f"{format_size(limit)}")
    if complete and total > policy.max_agency_quota:
        chk.report((), f"asks for {format_size(total)} in all (hosting and mailboxes together); "
                       f"one agency may have at most {format_size(policy.max_agency_quota)}",
                   unusable=False)


def _address_domain(kind: object, label: object, zone: str) -> str | None:
    """The domain of the request's addresses, when its fields are usable."""
    if kind == "parent":
        return zone
    if kind == "subdomain" and isinstance(label, str):
        return f"{label}.{zone}"
    return None


def _resolve_target(target: str, domain: str) -> str:
    """A target as a full address: a bare local part is a mailbox of ``domain``."""
    return target.lower() if "@" in target else f"{target}@{domain}"


def _mail_entries(chk: _Checked) -> Iterator[tuple[FieldPath, str | None]]:
    """Every mailbox and alias, mailboxes first: its path and usable local part."""
    for group in ("mailboxes", "aliases"):
        entries = chk.get("mail", group)
        for index in range(len(entries) if isinstance(entries, list) else 0):
            path: FieldPath = ("mail", group, index)
            local_part = chk.get(*path, "local_part")
            yield path, local_part if isinstance(local_part, str) else None


def _check_local_parts(chk: _Checked, policy: _Policy) -> dict[str, FieldPath] | None:
    """Local parts not special and unique in the request; returns their owners.

    Returns None when some local part is unusable, so that the owners are not
    known for sure.
    """
    owners: dict[str, FieldPath] = {}
    complete = "mail" not in (chk.data or {}) or chk.get("mail", "mailboxes") is not None
    parent = chk.get("mail", "domain") == "parent"
    for path, local_part in _mail_entries(chk):
        field_path = path + ("local_part",)
        if local_part is None:
            complete = False
        elif local_part in owners:
            chk.report(field_path, f"is already used by {_dotted(owners[local_part])}")
        else:
            owners[local_part] = path
            if local_part in policy.special_local_parts:
                chk.report(field_path, "is reserved for the mail server's own use; "
                                       "the inventory does not allow it in a request")
            elif parent and local_part.lower() in policy.parent_reserved_local_parts:
                chk.report(field_path, f"{local_part}@{policy.zone} is reserved on the parent "
                                       "domain: it is a role address of the whole zone "
                                       "(RFC 2142, certificate authorities' proof of control) "
                                       "or one the inventory itself uses; choose another "
                                       "local part, or mail.domain: subdomain")
            elif parent:
                chk.parent_local_parts.append((local_part, field_path))
    return owners if complete else None


@dataclass(frozen=True)
class _AliasContext:
    """What an alias target is checked against."""

    alias: str | None  # the alias's local part
    address: str | None  # the alias's full address
    own_domain: str | None  # the mail domain when this request alone serves it
    owners: dict[str, FieldPath] | None  # local parts of the request, None if not all known


def _target_problem(target: str, ctx: _AliasContext) -> str | None:
    """Why an alias target is wrong, or None."""
    if target == ctx.alias or target.lower() == ctx.address:
        return "is the alias itself: an alias cannot forward to itself"
    if ctx.owners is None:
        return None
    if "@" not in target:
        owner = ctx.owners.get(target)  # ("mail", "mailboxes" or "aliases", index)
        if owner is None or owner[1] != "mailboxes":
            return ("is not a mailbox of this request: write the local part of one of its "
                    "mailboxes, or a full address")
        return None
    local_part, _, domain = target.lower().rpartition("@")
    if domain == ctx.own_domain and local_part not in ctx.owners:
        return f"is in this request's own mail domain, but it has no mailbox or alias {local_part}"
    return None


def _check_aliases(chk: _Checked, owners: dict[str, FieldPath] | None, policy: _Policy) -> None:
    kind = chk.get("mail", "domain")
    domain = _address_domain(kind, chk.get("subdomain"), policy.zone)
    aliases = chk.get("mail", "aliases")
    for index in range(len(aliases) if isinstance(aliases, list) else 0):
        path: FieldPath = ("mail", "aliases", index)
        alias, targets = chk.get(*path, "local_part"), chk.get(*path, "to")
        if not isinstance(targets, list):
            continue
        ctx = _AliasContext(
            alias=alias,
            address=f"{alias}@{domain}" if alias and domain else None,
            own_domain=domain if kind == "subdomain" else None,
            owners=owners,
        )
        resolved = []
        for number, target in enumerate(targets):
            if not chk.usable(path + ("to", number)):
                continue
            problem = _target_problem(target, ctx)
            if problem:
                chk.report(path + ("to", number), problem)
            elif domain:
                resolved.append(_resolve_target(target, domain))
        if ctx.address:
            chk.forwards.append((ctx.address, path + ("to",), resolved))


def _check_database(chk: _Checked) -> None:
    """A database is for PHP programs: not with PHP turned off."""
    if chk.get("hosting", "database") is True and chk.get("hosting", "php") is False:
        chk.report(("hosting", "database"), "needs PHP: a site with php: false cannot use "
                                            "a database; remove php: false or the database")


def _check_rules(chk: _Checked, policy: _Policy, today: datetime.date) -> None:
    _check_subdomain(chk, policy)
    _check_dates(chk, today)
    _check_quotas(chk, policy)
    _check_database(chk)
    owners = _check_local_parts(chk, policy)
    _check_aliases(chk, owners, policy)


def _check_file(path: Path, policy: _Policy, today: datetime.date) -> _Checked:
    chk = _Checked(file=str(path), name=path.name)
    text = _read_text(chk, path)
    if text is not None:
        chk.data = _parse(chk, text)
    if chk.data is not None:
        _check_shape(chk, policy)
        _check_rules(chk, policy, today)
    return chk


# --- The set of files -----------------------------------------------------------


_Holders = dict[str, list[tuple[_Checked, FieldPath]]]


def _report_shared(holders: _Holders, describe: Callable[[str, str], str]) -> None:
    """Report every holder of a name that more than one file holds.

    ``describe(name, others)`` words the problem; ``others`` names the other holders.
    """
    for name, group in holders.items():
        if len(group) < 2:
            continue
        for chk, path in group:
            others = ", ".join(f"{o.file} ({_dotted(p)})" for o, p in group if o is not chk)
            chk.report(path, describe(name, others), unusable=False)


def _check_unique_subdomains(checks: list[_Checked]) -> None:
    holders: _Holders = defaultdict(list)
    for chk in checks:
        if isinstance(label := chk.get("subdomain"), str):
            holders[label].append((chk, ("subdomain",)))
    _report_shared(holders, lambda _, others: f"is also requested by {others}")


def _check_unique_hosting_accounts(checks: list[_Checked]) -> None:
    """No two labels give the same hosting account name (a long label is shortened)."""
    holders: _Holders = defaultdict(list)
    for chk in checks:
        label = chk.get("subdomain")
        if isinstance(label, str) and "hosting" in (chk.data or {}):
            holders[hosting_username(label)].append((chk, ("subdomain",)))
    # The same label twice is _check_unique_subdomains' to report.
    clashes = {name: group for name, group in holders.items()
               if len({chk.get("subdomain") for chk, _ in group}) > 1}
    _report_shared(clashes, lambda name, others: (
        f"would get the hosting account {name}, which {others} would get too; "
        "choose another label"))


def _check_parent_local_parts(checks: list[_Checked], zone: str) -> None:
    holders: _Holders = defaultdict(list)
    for chk in checks:
        for local_part, path in chk.parent_local_parts:
            holders[local_part].append((chk, path))
    _report_shared(holders, lambda name, others: (
        f"{name}@{zone} is also requested by {others}; "
        "local parts on the parent domain must be unique regency-wide"))


def _loops(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Groups of nodes that reach each other (strongly connected, more than one node).

    Tarjan's algorithm without recursion, so a long chain of aliases cannot
    exhaust the stack. Edges to nodes outside ``graph`` are ignored.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def enter(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)

    for root in sorted(graph):
        if root in index:
            continue
        enter(root)
        work = [(root, iter(graph[root]))]
        while work:
            node, edges = work[-1]
            for succ in edges:
                if succ not in graph:
                    continue
                if succ not in index:
                    enter(succ)
                    work.append((succ, iter(graph[succ])))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while not component or component[-1] != node:
                        component.append(stack.pop())
                        on_stack.discard(component[-1])
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _check_alias_loops(checks: list[_Checked]) -> None:
    graph: dict[str, list[str]] = defaultdict(list)
    where: dict[str, list[tuple[_Checked, FieldPath]]] = defaultdict(list)
    for chk in checks:
        for address, path, targets in chk.forwards:
            graph[address] += targets
            where[address].append((chk, path))
    for loop in _loops(graph):
        members = ", ".join(loop)
        for address in loop:
            for chk, path in where[address]:
                chk.report(path, f"makes a forwarding loop: {members} forward to each other",
                           unusable=False)


# --- Result -----------------------------------------------------------------------


def _normalized(data: dict[str, Any], file: str, zone: str) -> dict[str, Any]:
    """The plain, fully resolved form of a valid request that the project consumes."""
    label = data["subdomain"]
    fqdn = f"{label}.{zone}"
    letter, agency, contact = data["letter"], data["agency"], data["contact"]
    hosting = None
    if "hosting" in data:
        quota = data["hosting"]["quota"]
        hosting = {"quota": quota, "quota_bytes": parse_size(quota)}
        if "php" in data["hosting"]:  # left out: the inventory's sop_php_default decides
            hosting["php"] = data["hosting"]["php"]
        if "database" in data["hosting"]:  # left out: no database
            hosting["database"] = data["hosting"]["database"]
    mail = None
    if "mail" in data:
        kind = data["mail"]["domain"]
        domain = zone if kind == "parent" else fqdn
        mail = {
            "domain": kind,
            "address_domain": domain,
            "mailboxes": [
                {
                    "local_part": box["local_part"],
                    "address": f"{box['local_part']}@{domain}",
                    "holder": box["holder"],
                    "position": box.get("position"),
                    "quota": box["quota"],
                    "quota_bytes": parse_size(box["quota"]),
                }
                for box in data["mail"]["mailboxes"]
            ],
            "aliases": [
                {
                    "local_part": alias["local_part"],
                    "address": f"{alias['local_part']}@{domain}",
                    "to": [_resolve_target(target, domain) for target in alias["to"]],
                }
                for alias in data["mail"].get("aliases", [])
            ],
        }
    total = (hosting["quota_bytes"] if hosting else 0) + sum(
        box["quota_bytes"] for box in (mail["mailboxes"] if mail else [])
    )
    return {
        "file": file,
        "subdomain": label,
        "fqdn": fqdn,
        "letter": {key: letter[key] for key in ("number", "date", "subject")},
        "agency": {
            "name": agency["name"],
            "abbreviation": agency["abbreviation"],
            "category": agency["category"],
            "ends": agency.get("ends"),
        },
        "contact": {key: contact[key] for key in ("name", "nip", "position", "phone")},
        # Optional (issue 9): kept only when the file gives it; absent means active.
        **({"status": data["status"]} if "status" in data else {}),
        "hosting": hosting,
        "mail": mail,
        "quota_bytes_total": total,
    }


def _request_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[Problem]]:
    """The files to check: given files, and the *.yml/*.yaml files directly in given folders."""
    files: list[Path] = []
    problems: list[Problem] = []
    for given in map(Path, paths):
        if not given.is_dir():
            files.append(given)  # a missing or unreadable file is reported when it is read
            continue
        try:
            files += sorted(
                child for child in given.iterdir()
                if child.suffix in REQUEST_SUFFIXES
                and not child.name.startswith(".")
                and not child.is_dir()
            )
        except OSError as exc:
            problems.append(Problem(str(given), "", f"cannot be read: {exc.strerror or exc}"))
    seen: set[str] = set()
    unique = []
    for path in files:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique, problems


# Sumba is in Central Indonesian Time (WITA): a letter dated today there must
# pass on a controller or CI runner that keeps UTC.
REGENCY_TZ = datetime.timezone(datetime.timedelta(hours=8), "WITA")


def _inventory_names(value: object, zone: str, labels: set[str], local_parts: set[str]) -> None:
    """Collect, from an inventory value, the zone's labels and parent-domain local parts."""
    if isinstance(value, Mapping):
        for item in value.values():
            _inventory_names(item, zone, labels, local_parts)
    elif isinstance(value, list | tuple):
        for item in value:
            _inventory_names(item, zone, labels, local_parts)
    elif isinstance(value, str):
        text = value.strip().lower().removeprefix("mailto:").rstrip(".")
        local, at, domain = text.rpartition("@")
        if at and domain == zone and local:
            local_parts.add(local)
        elif not at and text.endswith("." + zone):
            labels.add(text.removesuffix("." + zone).rsplit(".", 1)[-1])


def inventory_policy(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The request policy of an inventory: ``sop_policy`` and ``sop_zone``, plus the
    names the inventory itself uses, which no request may take.

    Reserved labels: the names of ``sop_zone_base_records`` and ``sop_nameservers``
    and every host name ``<label>.<zone>`` in :data:`INVENTORY_NAME_VARIABLES`.
    Reserved parent-domain local parts: every address ``<local>@<zone>`` there
    (the hostmaster, the DMARC report address, the letterhead's email, ...).
    ``variables`` is the inventory's variables as ``localhost`` sees them (the
    wrapper's settings, or ``hostvars.localhost`` in a play); only the names
    above are read.
    """
    zone = variables["sop_zone"]
    policy = dict(variables.get("sop_policy") or {})
    labels: set[str] = set()
    local_parts: set[str] = set()
    for name in INVENTORY_NAME_VARIABLES:
        if name in variables:
            _inventory_names(variables[name], zone, labels, local_parts)
    for key in ("sop_zone_base_records", "sop_nameservers"):
        for entry in variables.get(key) or []:
            name = entry.get("name") if isinstance(entry, Mapping) else None
            if isinstance(name, str) and name not in ("@", ""):
                labels.add(name.lower().rstrip(".").removesuffix("." + zone).rsplit(".", 1)[-1])
    policy["reserved_labels"] = sorted(set(policy.get("reserved_labels") or []) | labels)
    policy["reserved_local_parts"] = sorted(set(policy.get("reserved_local_parts") or [])
                                            | local_parts)
    policy["zone"] = zone
    return policy


def regency_today() -> datetime.date:
    return datetime.datetime.now(REGENCY_TZ).date()


def validate_paths(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    policy: Mapping[str, Any] | None = None,
    today: datetime.date | None = None,
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Check request files and folders as one set.

    Returns the normalized requests of the files without any problem (sorted
    by subdomain) and every problem found (sorted by file, then line). Callers
    must treat any problem as a failure of the whole set. ``policy`` is laid
    over :data:`DEFAULT_POLICY`; ``today`` (default: today in the regency,
    WITA, UTC+8) decides what "in the future" means. Never raises for bad files; raises
    ``ValueError`` for an invalid policy.
    """
    rules = _resolve_policy(policy)
    today = today or regency_today()
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files, problems = _request_files(paths)
    checks = [_check_file(path, rules, today) for path in files]
    _check_unique_subdomains(checks)
    _check_unique_hosting_accounts(checks)
    _check_parent_local_parts(checks, rules.zone)
    _check_alias_loops(checks)
    requests = [
        _normalized(chk.data, chk.file, rules.zone)
        for chk in checks
        if chk.data is not None and not chk.problems
    ]
    problems += (problem for chk in checks for problem in chk.problems)
    requests.sort(key=lambda request: request["subdomain"])
    problems.sort(key=lambda p: (p.file, p.line or 0, p.field, p.message))
    return requests, problems
