"""Storage figures of a host and the headroom of each file system after allocation.

Pure functions over what the role's probes return (mount facts, ``du`` output,
``doveadm quota get`` JSON): no I/O here, so they are unit-tested without root.

The model (SOP step 3): a quota is a reservation. Data an account already
holds is on the disk (it is no longer in the free space) and inside its quota,
so only the part of each quota not yet used must still fit in the free space,
counted per account: an account above its quota does not free room for
another one, and data under a storage path outside every account is in no
quota. Once every quota is full the reserve must still be free.
"""

from __future__ import annotations

import json
import posixpath

from ansible.errors import AnsibleFilterError


def _norm(path: str) -> str:
    return posixpath.normpath(str(path))


def _mount_of(path: str, mounts: dict) -> str:
    """The mount point holding ``path`` (longest matching prefix)."""
    path = _norm(path)
    best = None
    for point in mounts:
        prefix = point.rstrip("/") + "/"
        if (path == point or path.startswith(prefix)) and (best is None or len(point) > len(best)):
            best = point
    if best is None:
        raise AnsibleFilterError(f"no mounted file system holds {path}")
    return best


def human_bytes(n: int) -> str:
    """Binary units for the messages an administrator reads: ``1.50 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def storage_check_depth(entry: dict) -> int:
    """How deep below the storage path its accounts lie (``du --max-depth``)."""
    root = _norm(entry["path"]).rstrip("/")
    depth = 0
    for account in entry.get("accounts") or []:
        rel = posixpath.relpath(_norm(account["path"]), root or "/")
        if rel.startswith(".."):
            raise AnsibleFilterError(f"account {account['id']}: {account['path']} is not under "
                                     f"its storage path {entry['path']}")
        depth = max(depth, 0 if rel == "." else rel.count("/") + 1)
    return depth


def _du_sizes(du_results: list) -> dict[str, int]:
    """Bytes per directory from ``du -b --max-depth=N PATH`` runs (one per storage path)."""
    sizes: dict[str, int] = {}
    for res in du_results or []:
        for line in (res.get("stdout") or "").splitlines():
            size, sep, path = line.partition("\t")
            if sep and size.isdigit():
                sizes[_norm(path)] = int(size)
    return sizes


def _dovecot_storage(result) -> dict[str, int]:
    """Bytes per user from ``doveadm -f json quota get -A`` (STORAGE is in KiB)."""
    if not result or result.get("skipped") or result.get("rc") != 0:
        return {}
    try:
        rows = json.loads(result.get("stdout") or "[]")
    except ValueError:
        return {}
    out: dict[str, int] = {}
    for row in rows if isinstance(rows, list) else []:
        if row.get("type") == "STORAGE" and str(row.get("value", "")).isdigit():
            user = str(row.get("username", "")).lower()
            out[user] = out.get(user, 0) + int(row["value"]) * 1024
    return out


def storage_check_usage(paths: list, du_results: list, dovecot_result=None) -> list:
    """What every account holds: disk bytes (du) and, for mailboxes, Dovecot's figure.

    ``used_bytes`` is the figure the quota is measured against: Dovecot's own
    count for a mailbox when Dovecot answered, else the bytes on disk.
    """
    sizes = _du_sizes(du_results)
    dovecot = _dovecot_storage(dovecot_result)
    out = []
    for entry in paths:
        for account in entry.get("accounts") or []:
            disk = sizes.get(_norm(account["path"]), 0)
            from_dovecot = entry.get("kind") == "mail" and str(account["id"]).lower() in dovecot
            out.append({
                "id": account["id"],
                "kind": entry.get("kind"),
                "path": account["path"],
                "storage_path": entry["path"],
                "quota_bytes": int(account["quota_bytes"]),
                "disk_bytes": disk,
                "used_bytes": dovecot[str(account["id"]).lower()] if from_dovecot else disk,
                "source": "dovecot" if from_dovecot else "du",
            })
    return out


def storage_check_headroom(paths: list, mounts: dict, du_results: list,
                           reserve_percent: int, host: str = "") -> list:
    """Group the storage paths by file system and decide whether the quotas fit."""
    reserve_percent = int(reserve_percent)  # extra vars arrive as strings
    sizes = _du_sizes(du_results)
    per_mount: dict[str, dict] = {}
    for entry in paths:
        point = _mount_of(entry["path"], mounts)
        info = mounts[point]
        item = per_mount.setdefault(point, {
            "mount": point,
            "paths": [],
            "capacity_bytes": int(info["size_total"]),
            "free_bytes": int(info["size_available"]),
            "allocated_bytes": 0,
            "used_bytes": 0,
            "outstanding_bytes": 0,
        })
        item["paths"].append(entry["path"])
        item["used_bytes"] += sizes.get(_norm(entry["path"]), 0)
        for account in entry.get("accounts") or []:
            quota = int(account["quota_bytes"])
            disk = sizes.get(_norm(account["path"]), 0)
            item["allocated_bytes"] += quota
            item["outstanding_bytes"] += max(quota - disk, 0)
    out = []
    where = f"{host}: " if host else ""
    for item in per_mount.values():
        reserve = item["capacity_bytes"] * reserve_percent // 100
        headroom = item["free_bytes"] - item["outstanding_bytes"]
        needed = item["outstanding_bytes"] + reserve
        unused = item["outstanding_bytes"]
        item.update(
            reserve_percent=reserve_percent,
            reserve_bytes=reserve,
            headroom_bytes=headroom,
            ok=headroom >= reserve,
            message=(
                f"{where}{', '.join(item['paths'])} on {item['mount']}: needs "
                f"{human_bytes(needed)} (quotas not yet used {human_bytes(unused)}"
                f" + reserve {reserve_percent}% of {human_bytes(item['capacity_bytes'])} = "
                f"{human_bytes(reserve)}), available {human_bytes(item['free_bytes'])}"
                + (f", short by {human_bytes(needed - item['free_bytes'])}."
                   if needed > item["free_bytes"] else ".")
            ),
        )
        out.append(item)
    return out


def storage_check_database_sizes(names: list, result=None) -> list:
    """Bytes of each named MariaDB database (information_schema: data and
    indexes), from the query's tab-separated rows; a database the server
    does not hold (or a server not running yet) is left out."""
    wanted = {str(n) for n in names or []}
    out = []
    for line in ((result or {}).get("stdout") or "").splitlines():
        name, _, size = line.partition("\t")
        if name in wanted and size.strip().isdigit():
            out.append({"name": name, "used_bytes": int(size)})
    return sorted(out, key=lambda d: d["name"])


class FilterModule:
    def filters(self):
        return {
            "storage_check_database_sizes": storage_check_database_sizes,
            "storage_check_depth": storage_check_depth,
            "storage_check_usage": storage_check_usage,
            "storage_check_headroom": storage_check_headroom,
        }
