"""`sop dnssec ds`: the DS records the parent (the go.id registrar) must hold.

The primary's key-signing keys (KSK or CSK) are read from BIND's key
directory by a read-only playbook (``playbooks/dnssec-ds.yml``); for each key
BIND wants in the zone its DS (SHA-256, from ``dnssec-dsfromkey``) is
printed, with what to do at the registrar, in Bahasa Indonesia.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .config import runner_env
from .exits import RUN_FAILED, SopError


class KeysUnreadable(SopError):
    """The primary could not be asked for its keys."""

    exit_code = RUN_FAILED


# BIND's key states (``.state`` files) in words for the operator.
DS_STATE_ID = {
    "hidden": "belum ada di induk (go.id)",
    "rumoured": "sedang dipasang di induk",
    "omnipresent": "sudah ada di induk",
    "unretentive": "sedang dicabut dari induk",
}


def parse_keys(text: str) -> list[dict]:
    """Blocks of the playbook's output: one dict per key-signing key."""
    keys: list[dict] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("### "):
            keys.append({"file": line[4:], "ds": []})
        elif not keys or not line:
            continue
        elif " IN DS " in f" {line} ":
            keys[-1]["ds"].append(" ".join(line.split()))
        elif ":" in line:
            name, _, value = line.partition(":")
            keys[-1][name.strip()] = value.strip()
    for key in keys:
        fields = key["ds"][0].split() if key["ds"] else []
        key["tag"] = fields[fields.index("DS") + 1] if "DS" in fields else "?"
    return keys


def wanted(keys: list[dict]) -> list[dict]:
    """The keys BIND keeps (or is bringing) into the zone: their DS belongs at the parent."""
    return [k for k in keys if k.get("GoalState") == "omnipresent"]


def render(zone: str, keys: list[dict]) -> str:
    keep = wanted(keys)
    lines = [f"# DS untuk zona {zone} (DNSSEC)", ""]
    if not keep:
        lines += ["Belum ada kunci penandatangan (KSK/CSK) untuk zona ini: DNSSEC belum aktif",
                  "(bind_dnssec di inventori) atau BIND belum membuat kuncinya.", ""]
        return "\n".join(lines)
    lines.append("Rekaman DS yang harus ada di induk (registrar go.id):")
    lines.append("")
    for key in keep:
        state = DS_STATE_ID.get(key.get("DSState", ""), key.get("DSState", "?"))
        lines.append(f"- kunci {key['tag']} (status DS: {state})")
        lines += [f"    {ds}" for ds in key["ds"]]
    gone = [k for k in keys if k not in keep]
    if gone:
        lines += ["", "Rekaman DS yang harus DICABUT dari induk (kunci lama):"]
        for key in gone:
            lines += [f"- kunci {key['tag']}"] + [f"    {ds}" for ds in key["ds"]]
    lines += [
        "",
        "Yang harus dilakukan di registrar go.id (PANDI):",
        "1. Masuk ke panel pengelolaan domain dan buka bagian DNSSEC / DS record.",
        "2. Masukkan setiap rekaman DS di atas: Key Tag, Algorithm (13 = ECDSA P-256),",
        "   Digest Type (2 = SHA-256) dan Digest, persis seperti tertulis.",
        "3. Cabut rekaman DS lama yang tidak tercantum lagi (jika ada).",
        f"4. Setelah induk menayangkannya (periksa: dig +short DS {zone}),",
        "   beri tahu BIND di server primer:",
    ]
    lines += [f"   rndc dnssec -checkds -key {k['tag']} published {zone}" for k in keep]
    lines.append("")
    return "\n".join(lines)


def read_keys(settings) -> tuple[str, list[dict]]:
    """Run the read-only playbook on the primary (ansible-runner); (zone, keys)."""
    import ansible_runner

    from .register import VAULT_FILE_ENV, vault_password_file

    repo = settings.repo_root
    env = runner_env(settings)
    keys: list[dict] = []
    failures: list[str] = []

    def collect(event: dict) -> bool:
        data = event.get("event_data") or {}
        res = data.get("res") or {}
        if event.get("event") == "runner_on_ok":
            keys.extend(parse_keys(res.get("stdout", "")))
        elif event.get("event") in ("runner_on_failed", "runner_on_unreachable"):
            failures.append(f"{data.get('host')}: {res.get('msg') or res.get('stderr') or '?'}")
        return False

    with tempfile.TemporaryDirectory(prefix="sop-dnssec-") as tmp:
        with vault_password_file(settings, Path(tmp)) as password_file:
            env[VAULT_FILE_ENV] = str(password_file)
            result = ansible_runner.run(
                private_data_dir=tmp, project_dir=str(repo),
                playbook=str(repo / "playbooks" / "dnssec-ds.yml"),
                inventory=str(settings.inventory), envvars=env, event_handler=collect,
                quiet=True, suppress_env_files=True, suppress_ansible_output=True)
    if result.rc != 0 or failures:
        why = "; ".join(failures) or f"ansible-playbook keluar dengan {result.rc}"
        raise KeysUnreadable(f"kunci DNSSEC tidak dapat dibaca dari server primer: {why}")
    return settings.zone, keys


# The task of playbooks/dnssec-ds.yml, also a play of site.yml.
LIST_TASK = "List each key-signing key's state and DS (SHA-256)"


def keys_from_events(events: Iterable[dict]) -> list[dict] | None:
    """The keys listed by a run of site.yml (its events); None when the run
    did not list them."""
    for event in events:
        data = event.get("event_data") or {}
        if event.get("event") == "runner_on_ok" and data.get("task") == LIST_TASK:
            return parse_keys((data.get("res") or {}).get("stdout", ""))
    return None


def report_notes(settings, keys: list[dict] | None = None) -> list[str]:
    """Lines for the run report when the registrar has something to do (none else;
    none for an unsigned zone: the primary has no key-signing key). ``keys``:
    as the run listed them; without them, they are read from the primary."""
    if keys is None:
        try:
            zone, keys = read_keys(settings)
        except SopError as exc:
            return [f"DNSSEC: {exc}."]
    else:
        zone = settings.zone
    publish = [ds for k in wanted(keys) if k.get("DSState") != "omnipresent" for ds in k["ds"]]
    withdraw = [ds for k in keys if k not in wanted(keys) and k.get("DSState") != "hidden"
                for ds in k["ds"]]
    notes = []
    if publish:
        notes.append(f"DNSSEC: pasang rekaman DS berikut di registrar go.id untuk {zone} "
                     "(langkahnya: `sop dnssec ds`): " + "; ".join(publish) + ".")
    if withdraw:
        notes.append(f"DNSSEC: cabut rekaman DS lama {zone} dari registrar go.id "
                     "(`sop dnssec ds`): " + "; ".join(withdraw) + ".")
    return notes


def _cmd_ds(args) -> int:
    from .config import load_settings

    settings = load_settings(args.inventory, args.repo)
    zone, keys = read_keys(settings)
    sys.stdout.write(render(zone, keys))
    return 0


def add_parser(sub) -> None:
    from . import exits

    p = sub.add_parser(
        "dnssec", help="DNSSEC: the DS records for the parent zone (the go.id registrar)",
        description="DNSSEC of the zone. `sop dnssec ds` reads the primary's key-signing "
                    "keys (read-only) and prints the DS records the registrar must publish, "
                    "with what to do there (in Bahasa Indonesia). Nothing is changed.",
        epilog=exits.epilog(exits.OK, exits.CANNOT_RUN, exits.RUN_FAILED))
    what = p.add_subparsers(dest="dnssec_command", required=True, metavar="WHAT")
    ds = what.add_parser("ds", help="print the DS records and the registrar's steps")
    ds.set_defaults(func=_cmd_ds)
