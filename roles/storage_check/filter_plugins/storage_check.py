"""Headroom of each file system once every quota on it is used up."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def _mount_of(path: str, mounts: dict) -> str:
    """The mount point holding ``path`` (longest matching prefix)."""
    best = "/"
    for point in mounts:
        prefix = point.rstrip("/") + "/"
        if (path == point or path.startswith(prefix)) and len(point) > len(best):
            best = point
    if best not in mounts:
        raise AnsibleFilterError(f"no mounted file system holds {path}")
    return best


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


def storage_check_headroom(demand: list, mounts: dict, du_results: list,
                           reserve_percent: int) -> list:
    """Group demand by file system and decide whether it fits.

    Quotas are reservations: data the accounts already hold is inside their
    quota, so only the part of the allocation not yet in use must still fit
    in the free space, and the reserve must be left over after that.
    """
    reserve_percent = int(reserve_percent)  # extra vars arrive as strings
    used = {}
    for res in du_results:
        path = res["item"]["path"]
        out = (res.get("stdout") or "").split()
        used[path] = int(out[0]) if res.get("rc") == 0 and out else 0
    per_mount: dict[str, dict] = {}
    for item in demand:
        point = _mount_of(item["path"], mounts)
        info = mounts[point]
        entry = per_mount.setdefault(point, {
            "mount": point,
            "paths": [],
            "capacity_bytes": int(info["size_total"]),
            "free_bytes": int(info["size_available"]),
            "allocated_bytes": 0,
            "used_bytes": 0,
            "outstanding_bytes": 0,
        })
        entry["paths"].append(item["path"])
        entry["allocated_bytes"] += int(item["bytes"])
        entry["used_bytes"] += used.get(item["path"], 0)
        entry["outstanding_bytes"] += max(int(item["bytes"]) - used.get(item["path"], 0), 0)
    out = []
    for entry in per_mount.values():
        reserve = entry["capacity_bytes"] * reserve_percent // 100
        headroom = entry["free_bytes"] - entry["outstanding_bytes"]
        entry.update(
            reserve_percent=reserve_percent,
            reserve_bytes=reserve,
            headroom_bytes=headroom,
            ok=headroom >= reserve,
            message=(
                f"{', '.join(entry['paths'])} on {entry['mount']}: needs "
                f"{_gib(entry['outstanding_bytes'] + reserve)} "
                f"(quotas not yet used {_gib(entry['outstanding_bytes'])} + reserve "
                f"{reserve_percent}% {_gib(reserve)}), available {_gib(entry['free_bytes'])}."
            ),
        )
        out.append(entry)
    return out


class FilterModule:
    def filters(self):
        return {"storage_check_headroom": storage_check_headroom}
