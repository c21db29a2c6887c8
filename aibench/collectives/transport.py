"""The transport a collective actually used, as NCCL itself reports it (NCCL_DEBUG=INFO).

NCCL prints, at communicator set-up (subsystems INIT, NET, GRAPH; NCCL's src/transport/*.cc and
src/graph/search.cc):

    NCCL version 2.21.5+cuda12.4
    Using network IB                                   (or Socket, or a plugin's name)
    NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ...
    Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read     (P2P/IPC, P2P/direct pointer, P2P/MNNVL)
    Channel 00 : 0[0] -> 1[1] via SHM/direct/direct    (through host memory)
    Channel 00/0 : 0[0] -> 8[0] [send] via NET/IB/0/GDRDMA
    NVLS multicast support is available on dev 0       (NVSwitch in-switch reduction)
    Pattern 4, crossNic 0, nChannels 16, bw 40.000000/40.000000, type NVL/PIX, sameChannels 1

`parse_nccl_log` turns such text into a summary; nothing is guessed: without NCCL output the
transport is unavailable with the reason, and so it is on gloo (the CPU preview), which reports none.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

# NCCL's topology path types (src/graph/topo.h, topoPathTypeStr): how two GPUs reach each other.
PATH_TYPES = {
    "LOC": "same device", "NVL": "NVLink", "NVB": "NVLink through a GPU", "C2C": "NVLink-C2C",
    "PIX": "PCIe (one switch)", "PXB": "PCIe (several switches)", "PXN": "NVLink then PCIe (PXN)",
    "P2C": "NVLink-C2C then PCIe", "PHB": "PCIe through the CPU", "SYS": "PCIe across CPU sockets (SMP)",
    "NET": "network", "DIS": "disconnected",
}
_VIA = re.compile(r"via (P2P|PSM_P2P|SHM|NET|COLLNET)/([^\s]+)")
_NETWORK = re.compile(r"Using network (\S+(?: \S+)*?)\s*$")
_VERSION = re.compile(r"NCCL version (\S+)")
_GRAPH = re.compile(r"Pattern (\d+), crossNic \d+, nChannels (\d+), bw ([\d.]+)/([\d.]+), type (\w+)/(\w+)")
_NVLS = re.compile(r"NVLS multicast support is (not )?available")
_COMM = re.compile(r"nRanks (\d+) nNodes (\d+) localRanks (\d+)")
_NET_DEVICES = re.compile(r"NET/(\w+) : Using (.+)$")
# gloo says nothing about what carried its bytes: unavailable with the reason, never guessed.
GLOO_TRANSPORT = {"backend": "gloo", "available": False,
                  "reason": "gloo reports no transport (only NCCL says what it used, through NCCL_DEBUG=INFO)"}


def parse_nccl_log(lines: Iterable[str]) -> dict[str, Any]:
    """What NCCL_DEBUG=INFO output says about the paths NCCL set up (see the module docstring)."""
    paths: Counter[str] = Counter()
    version = network = None
    nvls: bool | None = None
    mnnvl = False
    graphs: list[dict[str, Any]] = []
    devices: dict[str, str] = {}
    nodes = local = None
    for line in lines:
        if m := _VIA.search(line):
            kind, rest = m.group(1), m.group(2)
            first = rest.split("/")[0]
            if kind in ("P2P", "PSM_P2P"):
                label = f"P2P/{'direct pointer' if first == 'direct' else first}"
                mnnvl = mnnvl or first == "MNNVL"
            elif kind == "NET":
                label = f"NET/{first}" + ("/GDRDMA" if "GDRDMA" in rest else "")
            else:
                label = kind
            paths[label] += 1
        if (m := _VERSION.search(line)) and version is None:
            version = m.group(1)
        if (m := _NETWORK.search(line)) and network is None:
            network = m.group(1)
        if m := _NET_DEVICES.search(line):
            devices.setdefault(m.group(1), m.group(2).strip())
        if m := _NVLS.search(line):
            nvls = (nvls or False) or m.group(1) is None
        if m := _GRAPH.search(line):
            graphs.append({"pattern": int(m.group(1)), "channels": int(m.group(2)),
                           "bw_intra_gbps": float(m.group(3)), "bw_inter_gbps": float(m.group(4)),
                           "type_intra": m.group(5), "type_inter": m.group(6)})
        if m := _COMM.search(line):
            nodes, local = int(m.group(2)), int(m.group(3))
    intra = sorted({g["type_intra"] for g in graphs})
    inter = sorted({g["type_inter"] for g in graphs if g["type_inter"] not in ("LOC",)})
    return {
        "nccl_version": version, "network": network, "network_devices": devices, "paths": dict(paths),
        "nvls": nvls, "mnnvl": mnnvl, "nodes": nodes, "local_ranks": local,
        "link_types_intra": intra, "link_types_inter": inter,
        "summary": summarize(paths, network, nvls, mnnvl, intra),
    }


def summarize(paths: Counter[str] | dict[str, int], network: str | None, nvls: bool | None, mnnvl: bool,
              intra: list[str]) -> str | None:
    """One line for a report: "P2P/CUMEM over NVLink; NET/IB/GDRDMA between nodes; NVLS"."""
    if not paths and network is None:
        return None
    parts = []
    local = [p for p in paths if not p.startswith("NET/")]
    if local:
        links = ", ".join(PATH_TYPES.get(t, t) for t in intra if t not in ("NET", "LOC")) or None
        parts.append(" + ".join(sorted(local)) + (f" over {links}" if links else "") + " within a node")
    net = [p for p in paths if p.startswith("NET/")]
    if net:
        parts.append(" + ".join(sorted(net)) + " between nodes" + (f" (network {network})" if network else ""))
    elif network and not local:
        parts.append(f"network {network}")
    if nvls:
        parts.append("NVLS (NVSwitch multicast) available")
    if mnnvl:
        parts.append("multi-node NVLink (MNNVL)")
    return "; ".join(parts)


def prepare_nccl_debug(directory: str | Path, environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Ask NCCL to log its set-up to a file in `directory` (before the communicator exists).

    The user's own NCCL_DEBUG wins: when they set it without NCCL_DEBUG_FILE, its output goes to
    their console and we cannot read it (None). Returns the file pattern's directory, or None.
    """
    env = os.environ if environ is None else environ
    if env.get("NCCL_DEBUG") and not env.get("NCCL_DEBUG_FILE"):
        return None
    if env.get("NCCL_DEBUG_FILE"):
        return Path(env["NCCL_DEBUG_FILE"]).parent
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    env["NCCL_DEBUG"] = "INFO"
    env.setdefault("NCCL_DEBUG_SUBSYS", "INIT,NET,GRAPH")
    env["NCCL_DEBUG_FILE"] = str(path / "nccl.%h.%p.log")  # NCCL expands %h (host) and %p (pid)
    return path


def own_nccl_log(environ: MutableMapping[str, str] | None = None, pid: int | None = None,
                 host: str | None = None) -> tuple[Path | None, str | None]:
    """(this process's NCCL log file, None) or (None, why it cannot be read)."""
    import socket

    env = os.environ if environ is None else environ
    pattern = env.get("NCCL_DEBUG_FILE")
    if not env.get("NCCL_DEBUG"):
        return None, "NCCL_DEBUG is not set: NCCL did not report its transport"
    if not pattern:
        return None, f"NCCL_DEBUG={env['NCCL_DEBUG']} was set without NCCL_DEBUG_FILE: its output went to the console"
    full = host or socket.gethostname()
    # NCCL's %h is the host name up to its first dot (getHostName with '.' as delimiter).
    names = [pattern.replace("%h", h).replace("%p", str(pid or os.getpid())) for h in (full.split(".")[0], full)]
    for name in names:
        if Path(name).is_file():
            return Path(name), None
    return None, f"NCCL wrote no log at {names[0]}"


def nccl_transport(environ: MutableMapping[str, str] | None = None) -> dict[str, Any]:
    """This rank's NCCL transport summary, read from its log; unavailable with the reason."""
    path, why = own_nccl_log(environ)
    if path is None:
        return {"backend": "nccl", "available": False, "reason": why}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return {"backend": "nccl", "available": False, "reason": f"{path}: {exc}"}
    parsed = parse_nccl_log(text.splitlines())
    if parsed["summary"] is None:
        return {"backend": "nccl", "available": False, "source": str(path),
                "reason": "the NCCL log names no transport (NCCL_DEBUG_SUBSYS without INIT/NET?)"}
    return {"backend": "nccl", "available": True, "source": f"NCCL_DEBUG=INFO ({path.name})",
            "transport": parsed["summary"], **parsed}


def merge_transports(per_rank: list[dict[str, Any]], hosts: list[str]) -> dict[str, Any]:
    """One record's transport from every rank's own report: the distinct summaries, and which
    ranks (on which hosts) could not say; a rank's reason is kept, never filled in."""
    if not per_rank:
        return {"available": False, "reason": "no rank reported a transport"}
    backend = per_rank[0].get("backend")
    said = [t for t in per_rank if t.get("available")]
    silent = [{"rank": r, "host": hosts[r] if r < len(hosts) else None, "reason": t.get("reason")}
              for r, t in enumerate(per_rank) if not t.get("available")]
    if not said:
        reasons = sorted({str(t.get("reason")) for t in per_rank})
        return {"backend": backend, "available": False, "reason": "; ".join(reasons)}
    summaries = list(dict.fromkeys(str(t["transport"]) for t in said))
    out: dict[str, Any] = {"backend": backend, "available": True, "transport": " | ".join(summaries),
                           "nccl_version": said[0].get("nccl_version"), "network": said[0].get("network"),
                           "nvls": said[0].get("nvls"), "ranks_reporting": len(said)}
    if len(summaries) > 1:
        out["per_rank"] = [{"rank": r, "host": hosts[r] if r < len(hosts) else None,
                            "transport": t.get("transport")} for r, t in enumerate(per_rank) if t.get("available")]
    if silent:
        out["unreported"] = silent
    return out
