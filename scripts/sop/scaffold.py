"""`sop new`: write a new request file from questions or from flags.

The staff member who turns a request letter into a file answers questions
(when standard input is a terminal) or gives every value as a flag; the file
``requests/<subdomain>.yml`` is written only once the one validator
(:func:`sop.validate.validate_paths`) passes it together with the other
requests of the folder. Nothing is ever overwritten: an existing file is
changed by hand, in a pull request.

In questions, each answer is checked at once with the same validator (with
the answers given so far), so a mistake is explained and asked again. With
flags, every missing or wrong value is listed, naming its flag, and nothing
is written.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import exits
from .config import ConfigError, load_settings
from .validate import Problem, regency_today, validate_paths

Path_ = tuple[str | int, ...]

EXIT_WRITTEN, EXIT_NOT_WRITTEN = exits.OK, exits.INVALID


@dataclass(frozen=True)
class Question:
    """One value of a request: where it goes, its flag and how to ask for it."""

    path: Path_
    flag: str
    words: str  # what the value is, in plain words (used in prompts and messages)
    example: str = ""


SCALARS = [
    Question(("letter", "number"), "--letter-number", "the letter's number, as written on it",
             "000.1/123/DINKES/XI/2026"),
    Question(("letter", "date"), "--letter-date", "the letter's date, YYYY-MM-DD", "2026-11-20"),
    Question(("letter", "subject"), "--subject", "the letter's subject",
             "Permohonan pembuatan subdomain dan email dinas"),
    Question(("agency", "name"), "--agency-name", "the agency's official name", "Dinas Kesehatan"),
    Question(("agency", "abbreviation"), "--abbreviation",
             "the agency's official abbreviation, in capital letters", "DINKES"),
    Question(("agency", "category"), "--category",
             "the category: instansi (an agency), layanan_publik (a public service) or "
             "kegiatan (an event)", "instansi"),
    Question(("agency", "ends"), "--ends", "the last day of the event, YYYY-MM-DD",
             "2027-03-31"),
    Question(("contact", "name"), "--contact-name",
             "the full name of the agency's contact, who receives the handover", "Maria Ngongo"),
    Question(("contact", "nip"), "--nip", "the contact's NIP, 18 digits", "198501012010012001"),
    Question(("contact", "position"), "--position", "the contact's position (jabatan)",
             "Kepala Sub Bagian Umum"),
    Question(("contact", "phone"), "--phone", "the contact's phone number, +62... or 0...",
             "+62 812-3456-7890"),
    Question(("subdomain",), "--subdomain", "the subdomain, in lower case", "dinkes"),
    Question(("hosting", "quota"), "--hosting-quota",
             "the web hosting quota; none for no web hosting", "1G"),
    Question(("mail", "domain"), "--mail-domain",
             "where addresses end: subdomain (@<subdomain>.<zone>) or parent (@<zone>)",
             "subdomain"),
]
BY_PATH = {q.path: q for q in SCALARS}
REQUIRED = [q for q in SCALARS if q.path[0] in ("letter", "agency", "contact", "subdomain")
            and q.path != ("agency", "ends")]
MAILBOX_FIELDS = {"local_part": "the part of the address before the @",
                  "holder": "the full name of the person who uses the mailbox",
                  "quota": "the mailbox's quota, e.g. 1G"}
ALIAS_FIELDS = {"local_part": "the part of the alias address before the @",
                "to": "where mail to the alias goes: local parts of mailboxes of this request "
                      "or full addresses, separated by commas"}

# A valid request that fills the fields not answered yet, so that one answer
# can be checked on its own by the validator.
_SAMPLE: dict[str, Any] = {
    "letter": {"number": "000.1/1/CONTOH/I/2026", "date": "2026-01-05",
               "subject": "Permohonan pembuatan subdomain"},
    "agency": {"name": "Dinas Contoh", "abbreviation": "CONTOH", "category": "instansi"},
    "contact": {"name": "Nama Pengelola", "nip": "199001012015011001",
                "position": "Kepala Sub Bagian Umum", "phone": "0812-0000-0000"},
    "subdomain": "contoh",
    "hosting": {"quota": "1M"},
}
_SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class Cancelled(Exception):
    """The person stopped answering (end of input or Ctrl-C)."""


# --- Documents and fields ---------------------------------------------------------


def dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def parse_dotted(field: str) -> Path_:
    return tuple(int(t[1:-1]) if t.startswith("[") else t
                 for t in re.findall(r"[^.\[\]]+|\[\d+\]", field))


def _set(doc: dict, path: Path_, value: Any) -> None:
    container: Any = doc
    for part in path[:-1]:
        if isinstance(part, int):
            container = container[part]
        else:
            container = container.setdefault(part, {})
    if value is None:
        if isinstance(container, dict):
            container.pop(path[-1], None)
    else:
        container[path[-1]] = value


def _get(doc: dict, path: Path_) -> Any:
    value: Any = doc
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _merged(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _as_date(text: str) -> Any:
    """A date for YAML (written without quotes) when the text is one, else the text."""
    try:
        return datetime.date.fromisoformat(text) if len(text) == 10 else text
    except ValueError:
        return text


def ordered(doc: dict) -> dict:
    """The request's fields in the order of the template, empty groups left out."""
    out: dict[str, Any] = {}
    for key in ("letter", "agency", "contact", "subdomain", "hosting", "mail"):
        if doc.get(key) not in (None, {}, []):
            out[key] = doc[key]
    mail = out.get("mail")
    if mail:
        out["mail"] = {k: mail[k] for k in ("domain", "mailboxes", "aliases") if mail.get(k)}
    for group in ("letter", "agency"):
        for key in ("date", "ends"):
            if isinstance(out.get(group, {}).get(key), str):
                out[group] = {**out[group], key: _as_date(out[group][key])}
    return out


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key (yamllint's default style)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def render(doc: dict, today: datetime.date) -> str:
    header = (f"# Request written with `sop new` on {today.isoformat()}.\n"
              "# requests/README.md explains every field. Change it in a pull request.\n")
    return header + yaml.dump(ordered(doc), Dumper=_Dumper, sort_keys=False,
                              allow_unicode=True, width=110)


# --- Checking with the validator -----------------------------------------------------


def _file_name(doc: dict) -> str:
    label = doc.get("subdomain")
    return f"{label}.yml" if isinstance(label, str) and _SAFE_NAME.fullmatch(label) \
        else "request.yml"


@contextlib.contextmanager
def _staged(doc: dict, folder: Path | None, today: datetime.date) -> Iterator[Path]:
    """The request written to a private temporary folder (inside ``folder`` if given)."""
    if folder is not None:
        tmp = Path(tempfile.mkdtemp(prefix=".sop-new-", dir=folder))
    else:
        tmp = Path(tempfile.mkdtemp(prefix="sop-new-"))
    try:
        path = tmp / _file_name(doc)
        path.write_text(render(doc, today), encoding="utf-8")
        yield path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check(doc: dict, folder: Path | None, policy: dict, today: datetime.date,
          others: bool = True) -> tuple[list[Problem], list[Problem]]:
    """Problems of the new request, and of the other files of ``folder``.

    The new request is validated together with the requests already in
    ``folder`` (when ``others``), so a subdomain or parent-domain address
    already taken is found.
    """
    with _staged(doc, folder if others else None, today) as path:
        paths: list[Path] = [path]
        if others and folder is not None:
            paths += [p for p in sorted(folder.iterdir())
                      if p.suffix in (".yml", ".yaml") and not p.name.startswith(".")
                      and p.is_file()]
        _, problems = validate_paths(paths, policy, today)
        mine = [p for p in problems if p.file == str(path)]
        rest = [p for p in problems if p.file != str(path)]
    return mine, rest


# --- From flags ---------------------------------------------------------------------


def _mailbox_from_flag(text: str) -> dict | None:
    """``local:holder:quota`` (the holder may contain colons), or None."""
    local, sep, rest = text.partition(":")
    holder, sep2, quota = rest.rpartition(":")
    if not (sep and sep2):
        return None
    return {"local_part": local.strip(), "holder": holder.strip(), "quota": quota.strip()}


def _alias_from_flag(text: str) -> dict | None:
    """``local:target[,target...]``, or None."""
    local, sep, targets = text.partition(":")
    if not sep:
        return None
    return {"local_part": local.strip(),
            "to": [t.strip() for t in targets.split(",") if t.strip()]}


def from_flags(args) -> tuple[dict, list[str], set[Path_]]:
    """The document the flags describe, what is missing or malformed (plain words),
    and the fields that are missing."""
    doc: dict[str, Any] = {}
    wrong: list[str] = []
    for q in SCALARS:
        value = getattr(args, _dest(q.flag))
        if value is not None:
            _set(doc, q.path, value.strip())
    if getattr(args, "database", False):
        if "hosting" in doc:
            doc["hosting"]["database"] = True
        else:
            wrong.append("--database needs --hosting-quota: a database belongs to a website")
    missing = [q for q in REQUIRED if _get(doc, q.path) in (None, "")]
    for q in missing:
        wrong.append(f"{q.flag} is missing: {q.words} (e.g. {q.flag} '{q.example}')")
    boxes = []
    for text in args.mailbox or []:
        box = _mailbox_from_flag(text)
        if box is None:
            wrong.append(f"--mailbox {text!r}: write local_part:holder:quota, "
                         "e.g. --mailbox 'admin:Maria Ngongo:1G'")
        else:
            boxes.append(box)
    aliases = []
    for text in args.alias or []:
        alias = _alias_from_flag(text)
        if alias is None:
            wrong.append(f"--alias {text!r}: write local_part:target[,target...], "
                         "e.g. --alias 'info:admin,kepala'")
        else:
            aliases.append(alias)
    if boxes or aliases or "mail" in doc:
        doc.setdefault("mail", {}).setdefault("domain", "subdomain")
        if boxes:
            doc["mail"]["mailboxes"] = boxes
        if aliases:
            doc["mail"]["aliases"] = aliases
    missing_paths = {q.path for q in missing}
    if "hosting" not in doc and "mail" not in doc and not wrong[len(missing):]:
        wrong.append("neither --hosting-quota nor --mailbox is given: a request asks for "
                     "web hosting, email or both")
        missing_paths.add(())  # the validator says the same about the whole request
    return doc, wrong, missing_paths


def problems_of_flags(doc: dict, wrong: list[str], missing: set[Path_], folder: Path,
                      policy: dict, today: datetime.date) -> list[str]:
    """Everything wrong with the values given as flags, each once, naming its flag."""
    mine, _ = check(doc, folder, policy, today)

    def told(field: str) -> bool:  # the field, or the group holding only missing fields
        path = parse_dotted(field)
        return path in missing or any(m[:len(path)] == path for m in missing if m)

    return wrong + [describe(p, doc) for p in mine if not told(p.field)]


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def describe(problem: Problem, doc: dict) -> str:
    """A problem of the new request, naming the flag that sets the field."""
    if not problem.field:
        return f"the request as a whole: {problem.message}"
    path = parse_dotted(problem.field)
    if len(path) >= 3 and path[:2] in (("mail", "mailboxes"), ("mail", "aliases")) \
            and isinstance(path[2], int):
        flag = "--mailbox" if path[1] == "mailboxes" else "--alias"
        item = _get(doc, path[:3]) or {}
        shown = ":".join(str(item.get(k, "")) for k in (
            ("local_part", "holder", "quota") if flag == "--mailbox" else ("local_part",)))
        if flag == "--alias":
            shown += ":" + ",".join(item.get("to") or [])
        return f"{flag} {shown!r} ({problem.field}): {problem.message}"
    for end in range(len(path), 0, -1):
        if path[:end] in BY_PATH:
            return f"{BY_PATH[path[:end]].flag} ({problem.field}): {problem.message}"
    if path[:2] == ("mail", "mailboxes"):
        return f"--mailbox ({problem.field}): {problem.message}"
    return f"{problem.field}: {problem.message}"


# --- Questions --------------------------------------------------------------------------


class Interview:
    """Asks for the values of a request, checking each answer at once."""

    def __init__(self, doc: dict, folder: Path, policy: dict, zone: str,
                 today: datetime.date, ask: Callable[[str], str] = input,
                 say: Callable[[str], None] = print) -> None:
        self.doc = doc
        self.folder = folder
        self.policy = policy
        self.zone = zone
        self.today = today
        self._ask = ask
        self.say = say

    def ask(self, prompt: str) -> str:
        try:
            return self._ask(prompt).strip()
        except (EOFError, KeyboardInterrupt):
            raise Cancelled from None

    def problem_of(self, path: Path_, value: Any, others: bool = False) -> str | None:
        """Why ``value`` cannot go at ``path``, given the answers so far, or None."""
        candidate = _merged(_SAMPLE, self.doc)
        _set(candidate, path, value)
        mine, _ = check(candidate, self.folder, self.policy, self.today, others=others)
        key = dotted(path)
        for problem in mine:
            if problem.field == key or problem.field.startswith((key + ".", key + "[")):
                return problem.message
        return None

    def value(self, path: Path_, words: str, default: str | None = None,
              optional: bool = False, convert: Callable[[str], Any] = lambda s: s,
              others: bool = False) -> Any:
        """Ask until the answer passes; returns the answer (None: left empty, optional)."""
        shown_default = f" [{default}]" if default else ""
        while True:
            text = words.lstrip()
            indent = words[:len(words) - len(text)]
            answer = self.ask(f"{indent}{text[:1].upper()}{text[1:]}{shown_default}: ") \
                or default or ""
            if not answer or (optional and answer.lower() == "none"):
                if optional:
                    return None
                self.say("  Please answer: this value is required.")
                continue
            value = convert(answer)
            problem = self.problem_of(path, value, others=others)
            if problem is None:
                _set(self.doc, path, value)
                return value
            self.say(f"  {dotted(path)} {problem}")

    def scalar(self, q: Question, default: str | None = None, optional: bool = False,
               others: bool = False) -> Any:
        given = _get(self.doc, q.path)
        if given not in (None, ""):
            problem = self.problem_of(q.path, given, others=others)
            if problem is None:
                return given
            self.say(f"  {q.flag} {given!r}: {dotted(q.path)} {problem}")
            _set(self.doc, q.path, None)
        return self.value(q.path, f"{q.words} (e.g. {q.example})", default, optional,
                          others=others)

    def run(self) -> dict:
        self.say("New request: answer each question from the request letter. "
                 "Ctrl-D stops; nothing is written until every answer is right.")
        for group in ("letter", "agency"):
            for q in SCALARS:
                if q.path[0] == group and q.path != ("agency", "ends"):
                    self.scalar(q)
        if _get(self.doc, ("agency", "category")) == "kegiatan":
            self.scalar(BY_PATH["agency", "ends"])
        else:
            _set(self.doc, ("agency", "ends"), None)
        for q in SCALARS:
            if q.path[0] == "contact":
                self.scalar(q)
        abbreviation = str(_get(self.doc, ("agency", "abbreviation")) or "").lower()
        suggestion = abbreviation if _SAFE_NAME.fullmatch(abbreviation) else None
        label = self.scalar(BY_PATH["subdomain",], default=suggestion, others=True)
        self.say(f"  The name will be {label}.{self.zone}")
        if not self.scalar(BY_PATH["hosting", "quota"], optional=True):
            self.doc.pop("hosting", None)
        elif not _get(self.doc, ("hosting", "database")):
            self.database()
        self.mail(label)
        return self.doc

    def database(self) -> None:
        """Ask whether the site gets a database (hosting.database)."""
        while True:
            answer = self.ask("Does the site need a database (e.g. for WordPress)? "
                              "yes or no [no]: ").lower() or "no"
            if answer in ("yes", "y", "ya"):
                self.doc["hosting"]["database"] = True
                return
            if answer in ("no", "n", "tidak"):
                self.doc["hosting"].pop("database", None)
                return
            self.say("  Please answer yes or no.")

    def mail(self, label: str) -> None:
        given = self.doc.pop("mail", None) or {}
        domain = given.get("domain")
        hosting = "hosting" in self.doc
        while domain not in ("subdomain", "parent"):
            if domain is not None:
                self.say("  Please answer subdomain or parent" + (" or none." if hosting else "."))
            domain = self.ask(
                f"Email addresses end in @{label}.{self.zone} (subdomain) or @{self.zone} "
                f"(parent){'; none for no email' if hosting else ''} [subdomain]: "
            ).lower() or "subdomain"
            if domain == "none" and hosting:
                return
        self.doc["mail"] = {"domain": domain}
        self.items("mailboxes", MAILBOX_FIELDS, given.get("mailboxes") or [], required=True)
        self.items("aliases", ALIAS_FIELDS, given.get("aliases") or [], required=False)

    def items(self, group: str, fields: dict[str, str], given: list[dict],
              required: bool) -> None:
        entries = self.doc["mail"].setdefault(group, [])
        noun = "Mailbox" if group == "mailboxes" else "Alias"
        for index in range(200):
            path: Path_ = ("mail", group, index)
            preset = given[index] if index < len(given) else {}
            entries.append({})
            for number, (name, words) in enumerate(fields.items()):
                convert: Callable[[str], Any] = _targets if name == "to" else (lambda s: s)
                if preset.get(name):
                    problem = self.problem_of(path + (name,), preset[name])
                    if problem is None:
                        _set(self.doc, path + (name,), preset[name])
                        continue
                    self.say(f"  {dotted(path + (name,))} {problem}")
                if number == 0:
                    optional = not (required and index == 0)
                    hint = " (empty when done)" if optional else ""
                    if self.value(path + (name,), f"{noun} {index + 1}: {words}{hint}",
                                  optional=optional) is None:
                        entries.pop()
                        if not entries:
                            del self.doc["mail"][group]
                        return
                else:
                    self.value(path + (name,), f"  {words}", convert=convert)


    def fix(self, problems: list[Problem]) -> bool:
        """Ask again for the fields the final check found wrong; False if one cannot be."""
        for problem in problems:
            path = parse_dotted(problem.field)
            words = _words_of(path)
            if words is None:
                return False
            self.say(f"  {problem.field} {problem.message}")
            convert = _targets if path[-1] == "to" else (lambda s: s)
            self.value(path, words, convert=convert, others=True)
        return True


def _words_of(path: Path_) -> str | None:
    """How to ask for the field at ``path``, or None when it is no single answer."""
    if path in BY_PATH:
        return f"{BY_PATH[path].words} (e.g. {BY_PATH[path].example})"
    if len(path) == 4 and path[:2] == ("mail", "mailboxes") and path[3] in MAILBOX_FIELDS:
        return f"mailbox {path[2] + 1}: {MAILBOX_FIELDS[path[3]]}"
    if len(path) == 4 and path[:2] == ("mail", "aliases") and path[3] in ALIAS_FIELDS:
        return f"alias {path[2] + 1}: {ALIAS_FIELDS[path[3]]}"
    return None


def _targets(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


# --- The command ------------------------------------------------------------------------


def write_new(doc: dict, folder: Path, policy: dict, today: datetime.date) -> Path:
    """Validate ``doc`` with the folder's requests and write it; never overwrites.

    Raises :class:`NotWritten` with the problems when it does not pass.
    """
    final = folder / _file_name(doc)
    if final.exists() or final.is_symlink():
        raise NotWritten([f"{final} exists already: change it by hand in a pull request, "
                          "or choose another subdomain"])
    with _staged(doc, folder, today) as staged:
        paths = [staged] + [p for p in sorted(folder.iterdir())
                            if p.suffix in (".yml", ".yaml") and not p.name.startswith(".")
                            and p.is_file()]
        _, problems = validate_paths(paths, policy, today)
        mine = [p for p in problems if p.file == str(staged)]
        if mine:
            raise NotWritten([describe(p, doc) for p in mine], mine)
        try:
            os.link(staged, final)  # atomic, and fails if the name is taken meanwhile
        except FileExistsError:
            raise NotWritten([f"{final} exists already: change it by hand in a pull "
                              "request, or choose another subdomain"]) from None
    final.chmod(0o644)
    return final


class NotWritten(Exception):
    """The request was not written: the reasons in words, and the validator's problems."""

    def __init__(self, reasons: list[str], problems: list[Problem] | None = None) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons
        self.problems = problems or []


def _interview(interview: Interview, rounds: int = 5) -> Path:
    """Questions, then the check with the whole folder; wrong fields are asked again."""
    doc = interview.run()
    for _ in range(rounds):
        try:
            return write_new(doc, interview.folder, interview.policy, interview.today)
        except NotWritten as exc:
            if not exc.problems or not interview.fix(exc.problems):
                raise
    return write_new(doc, interview.folder, interview.policy, interview.today)


def _cmd_new(args) -> int:
    settings = load_settings(args.inventory, getattr(args, "repo", None))
    policy = settings.policy
    folder = args.output or settings.repo_root / "requests"
    if not folder.is_dir():
        print(f"sop new: the folder {folder} does not exist (give --output)", file=sys.stderr)
        return EXIT_NOT_WRITTEN
    today = regency_today()
    doc, wrong, missing = from_flags(args)
    interactive = not args.no_input and sys.stdin.isatty()
    try:
        if interactive:
            path = _interview(Interview(doc, folder, policy, settings.zone, today))
        else:
            reasons = problems_of_flags(doc, wrong, missing, folder, policy, today)
            if reasons:
                raise NotWritten(reasons)
            path = write_new(doc, folder, policy, today)
    except Cancelled:
        print("\nCancelled; nothing was written.", file=sys.stderr)
        return EXIT_NOT_WRITTEN
    except NotWritten as exc:
        for reason in exc.reasons:
            print(f"sop new: {reason}", file=sys.stderr)
        print("Nothing was written.", file=sys.stderr)
        return EXIT_NOT_WRITTEN
    except ValueError as exc:  # an invalid sop_policy in the inventory
        raise ConfigError(f"{settings.inventory}: {exc} (sop_policy)") from exc
    print(f"Written: {path}")
    print(f"Next: check it (sop validate {folder}) and open a pull request; the approval of "
          "the head of the E-Government Services Division is the disposition.")
    return EXIT_WRITTEN


def add_parser(sub) -> None:
    p = sub.add_parser(
        "new", help="write a new request file from questions or flags",
        description="Write requests/<subdomain>.yml for a new request letter. With a "
                    "terminal, asks for every value not given as a flag; otherwise every "
                    "required value must be a flag. The file is written only when it passes "
                    "validation; an existing file is never overwritten.",
        epilog=exits.epilog(exits.OK, exits.INVALID, exits.CANNOT_RUN))
    for q in SCALARS:
        p.add_argument(q.flag, metavar="TEXT", help=f"{q.words} (e.g. {q.example})")
    p.add_argument("--database", action="store_true",
                   help="the site gets a database of its own (hosting.database: true; "
                        "needs --hosting-quota)")
    p.add_argument("--mailbox", action="append", metavar="LOCAL:HOLDER:QUOTA",
                   help="a mailbox, e.g. 'admin:Maria Ngongo:1G' (repeat for more)")
    p.add_argument("--alias", action="append", metavar="LOCAL:TARGET[,TARGET]",
                   help="an alias, e.g. 'info:admin,kepala' (repeat for more)")
    p.add_argument("--output", type=Path, metavar="DIR",
                   help="folder to write into (default: requests/ of the repository)")
    p.add_argument("--no-input", action="store_true",
                   help="never ask questions, even on a terminal")
    p.set_defaults(func=_cmd_new)
