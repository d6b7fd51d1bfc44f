"""`sop apply`: run site.yml through ansible-runner, then steps 7-8.

One apply at a time (a lock in the state folder). Progress is shown per SOP
step in Bahasa Indonesia. After a successful run: post-checks, printouts for
requests with new (or reset) passwords, and the run report.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import (
    backup_status,
    dnssec,
    documents,
    lifecycle,
    model,
    names,
    postcheck,
    provenance,
    storage,
)
from .config import Settings, runner_env
from .exits import RequestsInvalid
from .register import VAULT_FILE_ENV, Register, vault_password
from .register import vault_password_file as _vault_password_file
from .steps import STEPS, run_steps, steps_of_play
from .validate import validate_paths

KEEP_RUNS = 20  # runner data folders kept under <state>/runs


class ApplyError(Exception):
    """A run that cannot start or did not finish (plain words)."""


@contextlib.contextmanager
def apply_lock(state_dir: Path, wait: float = 0, lock_file: Path | None = None):
    """One apply at a time: a second one is refused (or waits up to ``wait``
    seconds) instead of interleaving. ``lock_file`` (the inventory's
    ``sop_apply_lock_file``) is one path for every checkout and state folder
    on the controller; without it, ``<state_dir>/apply.lock``."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = lock_file or state_dir / "apply.lock"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "?"
                    raise ApplyError(
                        f"another sop apply is running ({holder}; lock {path}); "
                        "wait for it to finish") from None
                time.sleep(1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}, checkout "
                      f"{Path.cwd()}, since {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC\n"
                  .encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # the holder named in the file is the one holding it
    finally:
        os.close(fd)


def settings_lock(settings: Settings, wait: float = 0):
    """The lock of every command that writes the register, on the controller."""
    require_controller(settings)
    return apply_lock(settings.state_dir, wait, settings.lock_file)


def _is_local_address(address: str) -> bool:
    """Whether ``address`` (a name or an IP) is one of this machine's."""
    try:
        infos = socket.getaddrinfo(address, None, proto=socket.IPPROTO_UDP)
    except (socket.gaierror, UnicodeError):
        return False
    for family, _, _, _, sockaddr in infos:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((sockaddr[0], 0))
            return True
        except OSError:
            continue
    return False


def require_controller(settings: Settings) -> None:
    """An inventory with a ``controller`` group is applied from that host only:
    the register, the records and the lock live there."""
    if not settings.controllers:
        return
    if any(_is_local_address(c.address) for c in settings.controllers):
        return
    named = ", ".join(f"{c.name} ({c.address})" for c in settings.controllers)
    raise ApplyError(
        f"{settings.inventory} is applied only on its controller {named}, where the register "
        f"and the records are kept; this machine ({socket.gethostname()}) is not it. Log in "
        "there (or let the Apply workflow run), and run sop from there.")


@dataclass
class Progress:
    """Collects ansible-runner events: per-step timing, changes, failures."""

    out: Callable[[str], None] = print
    started: float = field(default_factory=time.monotonic)
    step_seconds: dict[int, float] = field(default_factory=dict)
    step_failed: set[int] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    unreachable: dict[str, dict] = field(default_factory=dict)
    _current: list[int] = field(default_factory=list)
    _since: float = 0.0

    def _close_step(self, now: float) -> None:
        if self._current:
            share = (now - self._since) / len(self._current)
            for n in self._current:
                self.step_seconds[n] = self.step_seconds.get(n, 0.0) + share

    def finish(self) -> None:
        self._close_step(time.monotonic())
        self._current = []

    def unreachable_outcome(self, stats: dict, run_ok: bool) -> list[dict]:
        """Hosts that could not be reached: skipped when the run went on
        without them and succeeded, else part of why it stopped."""
        dark = set((stats or {}).get("dark") or {})
        out = []
        for host, info in self.unreachable.items():
            fatal = host in dark or not run_ok
            if host in dark:
                self.failures.append(f"{host}: {info['task']}: tidak terjangkau: {info['message']}")
                self.step_failed.update(info["steps"])
            out.append({"host": host, "task": info["task"], "message": info["message"],
                        "steps": info["steps"], "skipped": not fatal})
        return out

    def handle(self, event: dict) -> bool:
        kind = event.get("event")
        data = event.get("event_data") or {}
        now = time.monotonic()
        if kind == "playbook_on_play_start":
            self._close_step(now)
            self._current = steps_of_play(data.get("play", ""))
            self._since = now
            for n in self._current:
                self.out(f"[{now - self.started:6.1f} s] Langkah {n}: {STEPS[n].name}")
        elif kind == "runner_on_ok" and data.get("res", {}).get("changed"):
            task = data.get("task", "")
            self.out(f"{'':10}  diubah: {task} ({data.get('host')})")
        elif kind == "runner_on_unreachable":
            # Whether the play let the run go on without the host is known only
            # from the final stats (`unreachable_outcome`).
            msg = (data.get("res") or {}).get("msg") or "unreachable"
            self.unreachable.setdefault(data.get("host"), {
                "task": data.get("task"), "message": msg, "steps": list(self._current)})
            self.out(f"{'':10}  TIDAK TERJANGKAU: {data.get('task')} ({data.get('host')}): {msg}")
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            res = data.get("res", {})
            msg = res.get("msg") or res.get("stderr") or "gagal"
            if res.get("censored"):
                msg = "gagal (rincian disembunyikan: tugas ini menangani data rahasia)"
            self.failures.append(f"{data.get('host')}: {data.get('task')}: {msg}")
            self.step_failed.update(self._current)
            self.out(f"{'':10}  GAGAL: {data.get('task')} ({data.get('host')}): {msg}")
        return True  # ansible-runner keeps the event only when the handler says so


def run_playbook(settings: Settings, run_dir: Path, progress: Progress,
                 extravars: dict | None = None, check: bool = False):
    """site.yml through ansible-runner. The vault password reaches Ansible as
    a file (ansible.cfg's ``scripts/vault-password`` reads
    ``$SOP_VAULT_PASSWORD_FILE``), never in the environment, which
    ansible-runner keeps among the run's artifacts."""
    import ansible_runner

    env = runner_env(settings)
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _vault_password_file(settings, run_dir) as password_file:
        env[VAULT_FILE_ENV] = str(password_file)
        return ansible_runner.run(
            private_data_dir=str(run_dir),
            project_dir=str(settings.repo_root),
            playbook=str(settings.repo_root / "playbooks" / "site.yml"),
            inventory=str(settings.inventory),
            envvars=env,
            extravars=extravars or {},
            cmdline="--check --diff" if check else None,
            event_handler=progress.handle,
            quiet=True,
            suppress_env_files=True,
            suppress_ansible_output=True,
        )


def apply(settings: Settings, overcommit: bool = False, check: bool = False,
          printouts: bool = True, out: Callable[[str], None] = print,
          allow_large_removal: bool = False, wait: float = 0) -> dict:
    """Run the whole SOP for the inventory; returns the run record.

    ``printouts=False`` (scheduled CI) leaves the sheets due in the register
    for `sop print` on the administrator's machine. ``allow_large_removal``
    lets a run remove more agencies than the inventory's share (issue 9).
    ``$SOP_TODAY`` (YYYY-MM-DD) rehearses the lifecycle at another date.
    ``wait``: seconds to wait for another apply to finish (the workflow's).
    """
    with settings_lock(settings, wait):
        return _apply_locked(settings, overcommit, check, printouts, out, allow_large_removal)


def _open_register(settings: Settings) -> Register:
    return Register(settings.path("sop_register_file"),
                    vault_password(settings.path("sop_vault_password_file")))


def _apply_locked(settings: Settings, overcommit: bool, check: bool, printouts: bool,
                  out: Callable[[str], None], allow_large_removal: bool = False) -> dict:
    started = dt.datetime.now(dt.UTC)
    run_id = started.strftime("%Y%m%dT%H%M%SZ")
    requests, new = _load_requests(settings, out)
    progress = Progress(out=out)
    # The documents' library loads while Ansible runs, not after it.
    warm = threading.Thread(target=documents.warm, daemon=True, name="sop-warm")
    warm.start()
    t0 = time.monotonic()
    result = run_playbook(settings, settings.state_dir / "runs" / run_id, progress,
                          _extravars(overcommit, allow_large_removal), check)
    warm.join()
    progress.finish()
    seconds = time.monotonic() - t0
    ok = result.rc == 0 and result.status == "successful"
    register = _open_register(settings)
    record = _base_record(settings, run_id, started, requests, new, result, progress, ok,
                          check=check, overcommit=overcommit,
                          allow_large_removal=allow_large_removal, seconds=seconds)
    served = _served(requests, record["lifecycle"])
    # SOP record 2 (hosting data) and the supervision of warnings 3-5.
    storage_extra = storage.record_run(settings, record, served, result.events)
    record["notes"] += storage_extra.pop("notes")
    record.update(storage_extra)
    record["notes"].extend(_usage_notes(result))
    printed: list[Path] = []
    if ok and not check:
        printed = _check_and_print(settings, register, record, served, new, progress, printouts)
        # DNSSEC: what the registrar must do with the DS, when anything (sop dnssec ds).
        record["notes"].extend(dnssec.report_notes(settings,
                                                   dnssec.keys_from_events(result.events)))
    record["printouts"] = [str(p) for p in printed]
    _finish_record(settings, record, requests, new, register, progress, ok, check, len(printed))
    _prune_runs(settings.state_dir / "runs")
    return record


def _load_requests(settings: Settings, out: Callable[[str], None]) -> tuple[list, list[str]]:
    """The requests, validated once for the run, and which of them are new."""
    requests_dir = settings.path("sop_requests_dir")
    requests, problems = validate_paths([requests_dir], settings.policy)
    if problems:
        for p in problems:
            out(f"  {p}")
        raise RequestsInvalid(f"{len(problems)} problem(s) in {requests_dir}; nothing was changed")
    known = set(_open_register(settings).accounts)
    new = [r["subdomain"] for r in requests
           if any(acct["id"] not in known for acct in model.accounts([r]))]
    out(f"Permohonan: {len(requests)}; baru pada proses ini: {', '.join(new) or '-'}")
    return requests, new


def _extravars(overcommit: bool, allow_large_removal: bool) -> dict:
    extravars: dict = {"sop_storage_overcommit": True} if overcommit else {}
    if allow_large_removal:
        extravars["sop_allow_large_removal"] = True
    if os.environ.get(lifecycle.TODAY_ENV):
        lifecycle.today_from(os.environ[lifecycle.TODAY_ENV])  # a wrong date stops here
        extravars["sop_today"] = os.environ[lifecycle.TODAY_ENV]
    return extravars


def _base_record(settings: Settings, run_id: str, started: dt.datetime, requests: list,
                 new: list[str], result, progress: Progress, ok: bool, *, check: bool,
                 overcommit: bool, allow_large_removal: bool, seconds: float) -> dict:
    """The run record as Ansible left it: status, changes, lifecycle, notes."""
    stats = result.stats or {}
    unreachable = progress.unreachable_outcome(stats, ok)
    inventory = settings.inventory
    record = {
        "run_id": run_id,
        "started": started.isoformat(timespec="seconds"),
        "controller": socket.gethostname(),
        "inventory": str(inventory.relative_to(settings.repo_root))
        if inventory.is_relative_to(settings.repo_root) else str(inventory),
        "status": "ok" if ok else "failed",
        "failure": None if ok else ("; ".join(progress.failures) or _tail(result)),
        "check_mode": check,
        "overcommit": overcommit,
        "allow_large_removal": allow_large_removal,
        "requests": [
            {"subdomain": r["subdomain"], "agency": r["agency"]["name"],
             "new": r["subdomain"] in new}
            for r in requests
        ],
        "changed": dict(stats.get("changed", {})),
        "ansible_seconds": round(seconds, 1),
        "notes": _unreachable_notes(unreachable),
        "storage": _storage_from_events(result),
        # Issue 19: each host's last good backup (read by playbooks/backup.yml).
        "backups": backup_status.rows_from_events(result, settings),
        "postchecks": [],
        "unreachable": unreachable,
        "lifecycle": _lifecycle_from_events(result),
    }
    if overcommit:
        record["notes"].append("Administrator mengizinkan alokasi melebihi cadangan (overcommit).")
    return record


def _check_and_print(settings: Settings, register, record: dict, served: list, new: list[str],
                     progress: Progress, printouts: bool) -> list[Path]:
    """Steps 8 and 7 after a good run: the post-checks, then the printouts due."""
    t = time.monotonic()
    # Every login where passwords are new or reset; a sample of the rest.
    changed = set(new) | {r["subdomain"] for r in served if register.print_due(r["subdomain"])}
    # The webmail (sop_webmail) is checked at the web server's address.
    webmail = {"webmail_host": (settings.get("sop_webmail") or {}).get("hostname")}
    record["postchecks"] = postcheck.run_postchecks(
        served, register.accounts, {**(settings.get("sop_postcheck") or {}), **webmail}, changed
    )
    progress.step_seconds[8] = time.monotonic() - t
    boxes = sum(len((r.get("mail") or {}).get("mailboxes", [])) for r in served)
    logins = sum(1 for c in record["postchecks"] if c["check"] == "imap")
    if logins < boxes:
        record["notes"].append(
            f"Login IMAP diperiksa pada {logins} dari {boxes} kotak surat: semua yang "
            "akunnya baru atau kata sandinya baru, ditambah sampel dari yang tidak berubah "
            "dan dari yang ditangguhkan."
        )
    printed: list[Path] = []
    if printouts:
        t = time.monotonic()
        printed = _print_due(settings, register, served)
        progress.step_seconds[7] = time.monotonic() - t
    pending = [r["subdomain"] for r in served if register.print_due(r["subdomain"])]
    if pending:
        record["notes"].append(
            "Dokumen cetak menunggu dicetak dengan `sop print`: " + ", ".join(pending) + "."
        )
    failed_checks = [c for c in record["postchecks"] if not c["ok"]]
    if failed_checks:
        record["status"] = "failed"
        record["failure"] = "pemeriksaan akhir gagal: " + ", ".join(
            f"{c['check'].upper()} {c['target']}" for c in failed_checks
        )
    return printed


def _finish_record(settings: Settings, record: dict, requests: list, new: list[str], register,
                   progress: Progress, ok: bool, check: bool, printed: int) -> None:
    """Steps 1-2's origins, the step table, the naming register and the report."""
    record["origins"] = provenance.request_origins(
        settings.repo_root, requests, lab=bool(settings.get("sop_lab_ca_cert")))
    record["steps"] = run_steps(progress.step_seconds, progress.step_failed, ok=ok, check=check,
                                printouts=printed, requests=len(requests), new=len(new),
                                origins=record["origins"])
    if record["lifecycle"] and not check:
        # SOP record 3: the naming register, after every run that decided the lifecycle.
        record["names"] = {k: str(v) for k, v in names.write_register(
            settings, requests, register.accounts, record["lifecycle"], run_id=record["run_id"]
        ).items()}
    record["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    t = time.monotonic()
    report_paths = documents.render_report(
        {k: v for k, v in record.items() if k != "printouts"},
        settings.documents(), settings.state_dir / "reports"
    )
    record["report"] = {k: str(v) for k, v in report_paths.items()}
    record["report_seconds"] = round(time.monotonic() - t, 2)


def _lifecycle_from_events(result) -> dict:
    """The lifecycle decided by the run (sop_lifecycle) and what the hosts did."""
    out: dict = {}
    done = {"archived": set(), "restored": set(), "purged": set()}
    for event in result.events:
        if event.get("event") != "runner_on_ok":
            continue
        data = event.get("event_data") or {}
        res = data.get("res") or {}
        if data.get("task_action") in ("sop_lifecycle",) and "summary" in res:
            out = dict(res["summary"])
            out["served"] = [r["subdomain"] for r in res.get("provision") or []]
        facts = res.get("ansible_facts") or {}
        for key, names_done in (facts.get("storage_archive_changes") or {}).items():
            if key in done:
                done[key].update(names_done)
    if out:
        out["done"] = {k: sorted(v) for k, v in done.items()}
    return out


def _served(requests: list[dict], life: dict) -> list[dict]:
    """The requests the servers serve this run (ended events left out), each
    with its effective status (an ended event is suspended)."""
    if not life or "served" not in life:
        return requests
    served = set(life["served"])
    states = life.get("states") or {}
    return [{**r, "status": (states.get(r["subdomain"]) or {}).get("state", "active")}
            for r in requests if r["subdomain"] in served]


def _unreachable_notes(unreachable: list[dict]) -> list[str]:
    notes = []
    for u in unreachable:
        steps = ", ".join(str(n) for n in u["steps"]) or "-"
        if u["skipped"]:
            notes.append(
                f"Server {u['host']} tidak terjangkau (langkah {steps}) dan dilewati; "
                "proses pada server lain selesai. Server itu menyusul setelah aktif kembali "
                "(DNS sekunder: dari server primer)."
            )
        else:
            dns = " (termasuk DNS)" if max(u["steps"], default=0) < 6 else ""
            notes.append(
                f"Server {u['host']} tidak terjangkau (langkah {steps}): proses dihentikan "
                f"pada langkah itu; langkah sesudahnya{dns} tidak dijalankan."
            )
    return notes


def _prune_runs(runs: Path, keep: int = KEEP_RUNS) -> None:
    """Keep the runner data of the latest runs only (names sort by time)."""
    folders = sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    for old in folders[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _tail(result, lines: int = 5) -> str:
    """Last lines of Ansible's output, for a failure no task event explains."""
    try:
        text = result.stdout.read()
    except (AttributeError, OSError):
        text = ""
    tail = " / ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())
    return f"ansible-playbook berhenti dengan kode {result.rc}: {tail or 'tanpa keluaran'}"


def _storage_from_events(result) -> list[dict]:
    """The storage check's figures, from the set_fact event of the role."""
    out = []
    for event in result.events:
        data = event.get("event_data") or {}
        facts = (data.get("res") or {}).get("ansible_facts") or {}
        for entry in facts.get("storage_check_result") or []:
            out.append({"host": data.get("host"), **{k: v for k, v in entry.items()
                                                     if k != "message"}})
    return out


def _usage_notes(result) -> list[str]:
    """A note per hosting account over its quota (from the sftp_hosting role's usage fact)."""
    notes = []
    for event in result.events:
        data = event.get("event_data") or {}
        facts = (data.get("res") or {}).get("ansible_facts") or {}
        for entry in facts.get("sftp_hosting_usage") or []:
            if entry.get("over"):
                notes.append(
                    f"Akun hosting {entry['name']} (server {data.get('host')}) memakai "
                    f"{documents.format_bytes_id(entry['used_bytes'])}, melebihi kuota "
                    f"{documents.format_bytes_id(entry['quota_bytes'])}: minta pengelola "
                    "merapikan isi situs atau ajukan penambahan kuota."
                )
    return notes


def _print_due(settings: Settings, register: Register, requests: list[dict]) -> list[Path]:
    """Printouts for requests with accounts not yet printed, or reset."""
    due = [r for r in requests if register.print_due(r["subdomain"])]
    return _print(settings, register, due)


def _print(settings: Settings, register: Register, requests: list[dict]) -> list[Path]:
    out_dir = settings.state_dir / "printouts"
    jobs = [(req, creds) for req in requests
            if (creds := register.for_subdomain(req["subdomain"]))]
    printed = documents.render_printouts(jobs, settings.documents(), out_dir)
    for req, _ in jobs:
        register.mark_printed(req["subdomain"])
    if printed:
        register.save()
    return printed


def print_requests(settings: Settings, labels: list[str]) -> list[Path]:
    """`sop print`: sheets of the named requests; with none named, those due."""
    requests, problems = validate_paths([settings.path("sop_requests_dir")], settings.policy)
    if problems:
        raise RequestsInvalid(f"{len(problems)} problem(s) in the requests; run sop validate")
    by_label = {r["subdomain"]: r for r in requests}
    unknown = [x for x in labels if x not in by_label]
    if unknown:
        raise ApplyError(f"no request named {', '.join(unknown)}")
    with settings_lock(settings):
        register = _open_register(settings)
        if labels:
            chosen = [by_label[x] for x in labels]
        else:
            chosen = [r for r in requests if register.print_due(r["subdomain"])]
        missing = [r["subdomain"] for r in chosen if not register.for_subdomain(r["subdomain"])]
        if missing:
            print(f"no accounts in the register yet for {', '.join(missing)} (run sop apply)",
                  file=sys.stderr)
        return _print(settings, register, chosen)
