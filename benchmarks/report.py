"""Ratios, targets and the printed table of ``python -m benchmarks`` (pure functions).

Everything here works on the JSON-ready results of :class:`benchmarks.suite.Suite`:
``results["paths"][name]`` per path (``status`` "ok", "not available" or "failed"), with the
sections ``latency``, ``tcp1``, ``tcp4``, ``udp64``, ``udp1400`` and ``cpu``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

BASELINES = ("routed", "vxlan")
# figure name -> (section, key inside it, key inside that or "")
FIGURES: dict[str, tuple[str, str, str]] = {
    "tcp1": ("tcp1", "gbps", ""),
    "tcp4": ("tcp4", "gbps", ""),
    "udp64": ("udp64", "max", "received_pps"),
    "udp1400": ("udp1400", "max", "received_pps"),
    "latency_p50": ("latency", "p50_us", ""),
    # whole-machine CPU cost of the same traffic (lower is better)
    "tcp1_cpu_per_gb": ("tcp1", "machine_cpu_s_per_gb", ""),
    "tcp4_cpu_per_gb": ("tcp4", "machine_cpu_s_per_gb", ""),
    "udp64_cpu_per_mpkt": ("udp64", "max", "machine_cpu_s_per_mpkt"),
}
COST_FIGURES = ("tcp1_cpu_per_gb", "tcp4_cpu_per_gb", "udp64_cpu_per_mpkt")
LISPD_VARIANTS = ("python", "compiled")
KERNEL_PATHS = ("routed", "vxlan")
# (path with the default engines, the same with one engine): the multi-core gain
ENGINE_PAIRS = (("compiled", "compiled-1"), ("rtr-compiled", "rtr-compiled-1"))
GAIN_FIGURES = (("tcp4", "TCP4"), ("udp64", "UDP64 pps"))


def per_million(cpu_s: float, packets: float) -> float | None:
    """CPU seconds per million packets (None when no packet was handled)."""
    return round(cpu_s * 1e6 / packets, 3) if packets > 0 else None


def figure(path: dict[str, Any] | None, name: str) -> float | None:
    """A figure of :data:`FIGURES` from one path's results, None when it was not measured
    (path not available, failed, test not run or in error)."""
    if not path or path.get("status") != "ok":
        return None
    section, key, sub = FIGURES[name]
    value: Any = path.get(section)
    for k in (key, sub):
        if not k:
            continue
        if not isinstance(value, dict):
            return None
        value = value.get(k)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` rounded to 4 digits, None when either is missing or ``b`` is not positive."""
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 4)


def add_derived(results: dict[str, Any]) -> None:
    """Add to ``results`` in place: per path ``ratios`` to each kernel baseline of the same
    run (throughput figures; for lispd paths and the VXLAN path), the latency added over the
    routed (and VXLAN) path's p50, and the evaluated ``targets``."""
    paths: dict[str, Any] = results.get("paths", {})
    base = {b: paths.get(b) for b in BASELINES}
    for name, path in paths.items():
        if path.get("status") != "ok":
            continue
        latency = path.get("latency")
        if isinstance(latency, dict) and "p50_us" in latency:
            for b in BASELINES:
                other = figure(base[b], "latency_p50")
                suffix = "" if b == "routed" else f"_vs_{b}"
                if other is not None and name != b:
                    latency[f"added_p50_us{suffix}"] = round(latency["p50_us"] - other, 1)
        if name == "routed":
            continue
        ratios: dict[str, dict[str, float | None]] = {}
        for b in BASELINES:
            if name == b or base[b] is None:
                continue
            ratios[b] = {
                fig: ratio(figure(path, fig), figure(base[b], fig))
                for fig in ("tcp1", "tcp4", "udp64", "udp1400")
            }
        if ratios:
            path["ratios"] = ratios
        vxlan = base["vxlan"]
        if name != "vxlan" and vxlan is not None:
            costs = {fig: ratio(figure(path, fig), figure(vxlan, fig)) for fig in COST_FIGURES}
            if any(v is not None for v in costs.values()):
                path["cost_ratios_vs_vxlan"] = costs
    results["targets"] = evaluate_targets(paths)
    results["multicore_gain"] = multicore_gain(paths)


def engines_of(path: dict[str, Any] | None) -> int | None:
    """How many engines the path's ITR (xtr1) ran (its ``version`` answer), None when unknown
    (kernel path, not measured, lispd did not say)."""
    value = (path or {}).get("engines", {}).get("xtr1")
    return value if isinstance(value, int) else None


def engines_cell(path: dict[str, Any]) -> str:
    """The engines of a path's lispd processes for the table: ``2`` when they all ran as
    many, ``2/1/2`` (xtr1/rtr/xtr2) otherwise, ``-`` for a kernel path."""
    engines = path.get("engines") or {}
    values = ["?" if v is None else str(v) for v in engines.values()]
    if not values:
        return "-"
    return values[0] if len(set(values)) == 1 else "/".join(values)


def multicore_gain(paths: dict[str, Any]) -> list[dict[str, Any]]:
    """For each pair of :data:`ENGINE_PAIRS` of which a path was run: TCP 4 streams and
    64-byte UDP packets/s of the path with its default engines (one per core) divided by the
    same path with one engine (``value``; None with ``note`` when a figure is missing)."""
    rows = []
    for many, one in ENGINE_PAIRS:
        if many not in paths and one not in paths:
            continue
        for fig, text in GAIN_FIGURES:
            value = ratio(figure(paths.get(many), fig), figure(paths.get(one), fig))
            row: dict[str, Any] = {
                "figure": fig,
                "text": text,
                "path": many,
                "vs": one,
                "engines": engines_of(paths.get(many)),
                "engines_vs": engines_of(paths.get(one)),
                "value": value,
            }
            if value is None:
                row["note"] = _why_missing(paths, many, one)
            rows.append(row)
    return rows


def _why_missing(paths: dict[str, Any], *names: str) -> str:
    for name in names:
        path = paths.get(name)
        if path is None:
            return f"{name} not measured"
        if path.get("status") != "ok":
            return f"{name} {path.get('status')}"
    return "figure missing"


def _row(
    target: str,
    path: str,
    value: float | None,
    threshold: float,
    unit: str,
    ok: Callable[[float], bool],
    missing: str,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "target": target,
        "path": path,
        "value": value,
        "threshold": threshold,
        "unit": unit,
        "met": None if value is None else bool(ok(value)),
    }
    if value is None:
        row["note"] = missing
    return row


def at_least(threshold: float) -> Callable[[float], bool]:
    """A test of ``value >= threshold``."""
    return lambda value: value >= threshold


TCP_PATHS = ("compiled", "compiled-gso-peers", "compiled-cut")
"""The ITR->ETR paths held to the TCP targets: the default, UDP GSO to lispd peers, and bursts
the kernel cuts before veths without UDP segmentation."""


def evaluate_targets(paths: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issue 24, each with its value in this run and ``met`` (True, False or
    None when a figure is missing; then ``note`` says why).

    * TCP (1 stream) through ITR->ETR >= 0.8x the kernel's VXLAN tunnel (the goal beyond:
      1.0x), and the whole machine's CPU per GB moved <= 1.5x VXLAN's, for the default compiled
      path and with UDP GSO to the lispd peer (``gso-rlocs``); compiled >= 5x python;
    * latency added over the routed path, p50 <= 50 us;
    * 64-byte UDP >= 600,000 packets per CPU-second of the ITR (xTR1's process) during the
      full-rate floods (goal 1,000,000); no loss at 50% of the measured maximum on every
      lispd path (not one datagram lost);
    * RTR (ITR -> RTR -> ETR) >= 0.8x ITR->ETR, in TCP and in 64-byte UDP packets/s.
    """
    rows = []
    for v in TCP_PATHS:
        rows.append(
            _row(
                "TCP1 >= 0.8x kernel VXLAN",
                v,
                ratio(figure(paths.get(v), "tcp1"), figure(paths.get("vxlan"), "tcp1")),
                0.8,
                "x",
                at_least(0.8),
                _why_missing(paths, v, "vxlan"),
            )
        )
        rows.append(
            _row(
                "machine CPU per GB, TCP1 <= 1.5x VXLAN",
                v,
                ratio(
                    figure(paths.get(v), "tcp1_cpu_per_gb"),
                    figure(paths.get("vxlan"), "tcp1_cpu_per_gb"),
                ),
                1.5,
                "x",
                lambda x: x <= 1.5,
                _why_missing(paths, v, "vxlan"),
            )
        )
    rows.append(
        _row(
            "TCP >= 5x python",
            "compiled",
            ratio(figure(paths.get("compiled"), "tcp1"), figure(paths.get("python"), "tcp1")),
            5.0,
            "x",
            lambda v: v >= 5.0,
            _why_missing(paths, "compiled", "python"),
        )
    )
    for v in LISPD_VARIANTS:
        path = paths.get(v) or {}
        latency = path.get("latency", {}) if path.get("status") == "ok" else {}
        rows.append(
            _row(
                "added latency p50 <= 50 us",
                v,
                latency.get("added_p50_us"),
                50.0,
                "us",
                lambda x: x <= 50.0,
                _why_missing(paths, v, "routed"),
            )
        )
    for v in LISPD_VARIANTS:
        path = paths.get(v) or {}
        itr = path.get("cpu", {}).get("xtr1", {}) if path.get("status") == "ok" else {}
        rows.append(
            _row(
                "64-byte UDP >= 600k pkt/CPU-s at the ITR",
                v,
                itr.get("udp64_pps_per_cpu"),
                6e5,
                "pps/core",
                lambda x: x >= 6e5,
                _why_missing(paths, v),
            )
        )
    for v, path in paths.items():
        if v in KERNEL_PATHS or not isinstance(path, dict):
            continue
        half = path.get("udp64", {}).get("half", {}) if path.get("status") == "ok" else {}
        rows.append(
            _row(
                "64-byte UDP: no loss at 50% of max",
                v,
                half.get("loss_pct"),
                0.0,
                "% lost",
                lambda x: x == 0.0,
                _why_missing(paths, v),
            )
        )
    for v in (*LISPD_VARIANTS, "compiled-cut"):
        for fig, text in (("tcp1", "TCP"), ("udp64", "64-byte UDP pps")):
            rows.append(
                _row(
                    f"RTR >= 0.8x ITR->ETR, {text}",
                    f"rtr-{v}",
                    ratio(figure(paths.get(f"rtr-{v}"), fig), figure(paths.get(v), fig)),
                    0.8,
                    "x",
                    lambda x: x >= 0.8,
                    _why_missing(paths, f"rtr-{v}", v),
                )
            )
    return rows


# -- the printed report -------------------------------------------------------------------------


def _num(value: float | None, digits: int, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _loss(d: Any) -> str:
    value = _get(d, "loss_pct")
    return "-" if value is None else f"{value:.2f}"


HANDOFFS = {"lispd ITR->ETR": 3, "ITR->RTR->ETR": 5}
"""Process hand-offs a ping's round trip crosses beyond the kernel paths' (the ITR takes the
request from the TUN, the ETR from its socket, the ITR the reply from its socket; via an RTR
also the RTR, twice).  The ETR's TUN write and the echo reply run in the ETR's own system
call, and the sender's wake-up is in every path alike."""


def _handoff_lines(floor: Any) -> list[str]:
    """The machine's hand-off floor (``udpgen handoff``) and what it makes of the added
    latency of lispd's paths."""
    p50 = _get(floor, "p50_us")
    if p50 is None:
        return []
    one = p50 / 2
    floors = ", ".join(f"{name} {n} = {n * one:.0f} us" for name, n in HANDOFFS.items())
    return [
        f"hand-off floor: two processes passing a message there and back, p50 {p50:.0f} us "
        f"({one:.0f} us a hand-off); least latency lispd can add here: {floors}"
    ]


def format_report(results: dict[str, Any]) -> str:
    """The tables printed at the end of a run: figures, ratios to the kernel baselines, CPU
    per lispd process, the issue's targets, the paths not measured and why."""
    paths: dict[str, Any] = results.get("paths", {})
    settings = results.get("settings", {})
    machine = results.get("machine", {})
    out = [
        f"machine: {machine.get('cpus')} CPUs ({machine.get('cpu_model', '?')}), kernel "
        f"{machine.get('kernel')}, lispd {machine.get('lispd_commit', '?')}",
        f"{settings.get('seconds')} s per run, median of {settings.get('runs')} runs "
        f"(min-max and every run in the JSON); latency: {settings.get('ping_count')} pings "
        f"every {settings.get('ping_interval_ms')} ms",
        *_handoff_lines(machine.get("handoff_rtt")),
        "",
    ]
    head = (
        f"{'path':<24}{'eng':>4}{'TCP1':>7}{'TCP4':>7}{'UDP64':>9}{'loss':>7}{'@50%':>6}"
        f"{'UDP1400':>9}{'loss':>7}{'@50%':>6}{'p50':>7}{'p99':>7}{'added':>7}"
    )
    units = (
        f"{'':<24}{'':>4}{'Gb/s':>7}{'Gb/s':>7}{'kpps':>9}{'%':>7}{'%':>6}"
        f"{'kpps':>9}{'%':>7}{'%':>6}{'us':>7}{'us':>7}{'us':>7}"
    )
    out += [head, units]
    missing = []
    for name, path in paths.items():
        if path.get("status") != "ok":
            missing.append(f"  {name}: {path.get('status')}: {path.get('reason', '')}")
            out.append(f"{name:<24}{path.get('status')}")
            continue
        lat = path.get("latency", {})
        row = (
            f"{name:<24}{engines_cell(path):>4}"
            f"{_num(figure(path, 'tcp1'), 2):>7}{_num(figure(path, 'tcp4'), 2):>7}"
            f"{_num(figure(path, 'udp64'), 1, 1e-3):>9}{_loss(_get(path, 'udp64', 'max')):>7}"
            f"{_loss(_get(path, 'udp64', 'half')):>6}"
            f"{_num(figure(path, 'udp1400'), 1, 1e-3):>9}"
            f"{_loss(_get(path, 'udp1400', 'max')):>7}"
            f"{_loss(_get(path, 'udp1400', 'half')):>6}"
            f"{_num(lat.get('p50_us'), 0):>7}{_num(lat.get('p99_us'), 0):>7}"
            f"{_num(lat.get('added_p50_us'), 0):>7}"
        )
        out.append(row)
    out.append(
        "  eng: fast-path engines per lispd process (its version answer; xtr1/rtr/xtr2 when "
        "they differ); loss: offered vs received at full rate;"
    )
    out.append("  @50%: sent at half the received maximum; added: p50 minus the routed path's")
    senders = [
        f"{name} {'/'.join(str(_get(path, t, 'senders') or '-') for t in ('udp64', 'udp1400'))}"
        for name, path in paths.items()
        if path.get("status") == "ok" and (_get(path, "udp64", "senders") is not None)
    ]
    if senders:
        flows = settings.get("flows")
        run = settings.get("flow_run", 1)
        how = "datagram by datagram" if run == 1 else f"{run} datagrams in a row each"
        out.append(f"  udpgen senders (64/1400): {', '.join(senders)}")
        out.append(
            f"  UDP flows: {flows} (source ports, split between a path's senders, at least one "
            f"each), {how}"
        )
    spread = [
        f"{name} {label} {engine_shares(entry)}"
        for name, path in paths.items()
        for label, entry in (path.get("engine_spread") or {}).items()
    ]
    if spread:
        out.append("  packets per engine (main/worker1/..., % of the process's) udp64 | tcp4:")
        out += [f"    {line}" for line in spread]
    # ratios
    out += [
        "",
        f"{'ratio to kernel routed / VXLAN':<32}{'TCP1':>14}{'TCP4':>14}"
        f"{'UDP64':>14}{'UDP1400':>14}",
    ]
    for name, path in paths.items():
        ratios = path.get("ratios")
        if not ratios:
            continue
        cells = []
        for fig in ("tcp1", "tcp4", "udp64", "udp1400"):
            r = _get(ratios, "routed", fig)
            x = _get(ratios, "vxlan", fig)
            cells.append(f"{_num(r, 3)} / {_num(x, 3)}")
        out.append(f"{name:<32}" + "".join(f"{c:>14}" for c in cells))
    # whole-machine cost
    costs = [
        (name, [figure(path, fig) for fig in COST_FIGURES], path.get("cost_ratios_vs_vxlan") or {})
        for name, path in paths.items()
        if path.get("status") == "ok"
    ]
    if any(any(v is not None for v in values) for _n, values, _r in costs):
        out += [
            "",
            f"{'whole-machine CPU':<24}{'TCP1 s/GB':>11}{'TCP4 s/GB':>11}{'UDP64 s/Mpkt':>14}"
            f"{'x VXLAN (TCP1/TCP4/UDP64)':>28}",
        ]
        for name, values, rel in costs:
            cells = " / ".join(_num(rel.get(fig), 2) for fig in COST_FIGURES) if rel else "-"
            out.append(
                f"{name:<24}{_num(values[0], 2):>11}{_num(values[1], 2):>11}"
                f"{_num(values[2], 2):>14}{cells:>28}"
            )
        out.append(
            "  user + system + irq + softirq of every CPU during the runs (senders, receivers and "
            "routers included), per GB received / per million datagrams received at full rate"
        )
    # CPU
    cpu_rows = [
        (name, label, c)
        for name, path in paths.items()
        for label, c in (path.get("cpu") or {}).items()
    ]
    if cpu_rows:
        out += [
            "",
            f"{'lispd CPU':<24}{'process':<8}{'CPU s':>8}{'Mpkt':>9}{'s/Mpkt':>9}"
            f"{'flood s/Mpkt':>14}{'flood pkt/CPU-s':>17}",
        ]
        for name, label, c in cpu_rows:
            out.append(
                f"{name:<24}{label:<8}{c['cpu_s']:>8.2f}{c['packets'] / 1e6:>9.3f}"
                f"{_num(c.get('cpu_s_per_mpkt'), 2):>9}"
                f"{_num(c.get('udp64_cpu_s_per_mpkt'), 2):>14}"
                f"{_num(c.get('udp64_pps_per_cpu'), 0):>17}"
            )
        out.append(
            "  all runs of the path; flood: the full-rate 64-byte UDP runs (A -> B: xtr1 "
            "encapsulates, xtr2 decapsulates)"
        )
    rtr = [(name, path.get("rtr_check")) for name, path in paths.items() if path.get("rtr_check")]
    for name, c in rtr:
        out.append(
            f"{name}: RTR check passed on every run: re-encapsulated {c['rtr_reencap']} "
            f"packets (ITRs encapsulated {c['xtrs_encap']}, ETRs decapsulated "
            f"{c['xtrs_decap']})"
        )
    # targets
    out += ["", f"{'target (issue 24)':<46}{'path':<20}{'value':>12}  result"]
    for t in results.get("targets", []):
        value = t["value"]
        if value is None:
            shown, verdict = "-", f"n/a ({t.get('note', '')})"
        else:
            digits = 0 if t["unit"] in ("pps/core",) else (1 if t["unit"] == "us" else 3)
            shown = f"{value:.{digits}f}"
            verdict = "met" if t["met"] else "NOT met"
        out.append(f"{t['target']:<46}{t['path']:<20}{shown:>12}  {verdict}")
    gains = results.get("multicore_gain") or []
    if gains:
        out += ["", f"{'multi-core gain (engines per core / one)':<46}{'path':<14}{'value':>12}"]
        for g in gains:
            shown = "-" if g["value"] is None else f"{g['value']:.3f}"
            many, one = g.get("engines"), g.get("engines_vs")
            eng = (
                f"{many if many is not None else '?'} vs {one if one is not None else '?'} engines"
            )
            extra = eng if g["value"] is not None else f"n/a ({g.get('note', '')})"
            out.append(
                f"{g['text'] + ': ' + g['path'] + ' / ' + g['vs']:<46}{g['path']:<14}"
                f"{shown:>12}  {extra}"
            )
    notes = [f"  {name}: {path['note']}" for name, path in paths.items() if path.get("note")]
    if notes:
        out += ["", "notes:", *notes]
    if missing:
        out += ["", "not measured:", *missing]
    mapcache = results.get("mapcache_scale")
    if mapcache is not None:
        out += ["", f"map-cache scale: {summarize_section(mapcache)}"]
    disturbed = disturbed_tests(paths)
    if disturbed:
        out.append(f"still disturbed by other processes after retries: {', '.join(disturbed)}")
    if "elapsed_s" in results:
        out.append(f"total {results['elapsed_s']:.0f} s")
    return "\n".join(out)


def engine_shares(entry: dict[str, Any]) -> str:
    """``51/49 | 100/0 (restarts 0)``: each engine's share of the packets of a lispd process
    in the 64-byte floods and the 4-stream TCP runs (``-`` for a test not run)."""
    parts = []
    for key in ("udp64", "tcp4"):
        counts = entry.get(key) or {}
        total = sum(counts.values())
        if not counts or total <= 0:
            parts.append("-")
            continue
        parts.append("/".join(f"{100 * v / total:.0f}" for v in counts.values()))
    text = " | ".join(parts)
    restarts = entry.get("worker_restarts")
    if restarts:
        text += f" (workers restarted: {restarts})"
    return text


def summarize_section(section: dict[str, Any]) -> str:
    """One line for an extra section: its ``summary`` string, else ``key=value`` of its
    top-level numbers and strings."""
    if isinstance(section.get("summary"), str):
        return str(section["summary"])
    parts = []
    for key, value in section.items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return ", ".join(parts) or "(no figures)"


def disturbed_tests(paths: dict[str, Any]) -> list[str]:
    """``path test`` of every test with a kept run still disturbed by other processes."""
    found = []
    for name, path in paths.items():
        for test in ("latency", "tcp1", "tcp4", "udp64", "udp1400"):
            section = path.get(test)
            if not isinstance(section, dict):
                continue
            runs = list(section.get("runs", []))
            for part in ("max", "half"):
                runs += _get(section, part, "runs") or []
            if any(r.get("disturbed") for r in runs):
                found.append(f"{name} {test}")
    return found
