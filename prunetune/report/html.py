"""The job report, ``front.html``: one self-contained page (plotly inlined, no network).

- the front on the REPORT split (search-split trials as a grey cloud behind it), with the
  uniform and OWL baselines scored on the same split, and the dense model's quality;
- a heatmap of the front points' per-layer sparsities;
- the comparison with the previous run, for a scheduled job;
- the job's provenance: spec hash, model fingerprint, data-split hashes, seed, versions.

Built from a :class:`ReportData`, which comes from a finished run's outcome
(``prunetune run --out``) or from the job's study (``GET /jobs/{id}/report``).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prunetune.store.studies import BASELINES_KEY, LATENCY_NAME, LEVELS_KEY, SIZE_NAME

if TYPE_CHECKING:
    from prunetune.report.fronts import StudyFront
    from prunetune.search.controller import SearchOutcome

BASELINE_STYLE = {"uniform": ("#1f77b4", "dash"), "owl": ("#2ca02c", "dot")}


@dataclass(frozen=True)
class ReportPoint:
    trial: int
    size: float
    search_quality: float
    report_quality: float | None
    sparsity: float | None
    allocation: list[float]
    latency: float | None = None  # measured seconds, search split


@dataclass(frozen=True)
class ReportData:
    title: str
    quality_name: str
    layers: list[str]
    front: list[ReportPoint]
    cloud: list[tuple[float, float]] = field(default_factory=list)  # (size, search quality)
    baselines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dense: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None
    levels: list[dict[str, Any]] = field(default_factory=list)  # the front read at the front levels
    objectives: tuple[str, ...] = (SIZE_NAME,)  # what the front minimises besides quality
    latency_cloud: list[tuple[float, float]] = field(default_factory=list)  # (latency, search quality)

    @classmethod
    def from_outcome(cls, outcome: SearchOutcome, title: str | None = None) -> ReportData:
        q = outcome.quality_name
        layers = list(outcome.extra.get("layers", []))  # type: ignore[call-overload]
        front = [ReportPoint(
            r.number, float(r.size or 0.0), float(r.quality or 0.0),
            _num(outcome.reports.get(r.number, {}).get(q)), _num(r.metrics.get("sparsity")),
            list(r.candidate.sparsities), _num(r.metrics.get(LATENCY_NAME)),
        ) for r in sorted(outcome.front, key=lambda r: r.size or 0.0)]
        full = [r for r in outcome.results if r.ok and r.candidate.fidelity == 1.0]
        cloud = [(float(r.size or 0.0), float(r.quality or 0.0)) for r in full]
        latency_cloud = [(float(r.metrics[LATENCY_NAME]), float(r.quality or 0.0)) for r in full
                         if LATENCY_NAME in r.metrics]
        return cls(title or str(outcome.extra.get("study_name", "job")), q, layers, front, cloud,
                   dict(outcome.extra.get("baselines") or {}),  # type: ignore[call-overload]
                   dict(outcome.dense), dict(outcome.extra.get("provenance") or {}),  # type: ignore[call-overload]
                   levels=list(outcome.extra.get("levels") or []),  # type: ignore[call-overload]
                   objectives=tuple(outcome.extra.get("objectives") or (SIZE_NAME,)),  # type: ignore[arg-type]
                   latency_cloud=latency_cloud)

    @classmethod
    def from_study(cls, sf: StudyFront, title: str, comparison: dict[str, Any] | None = None) -> ReportData:
        q = sf.quality_name
        layers = list(sf.points[0].allocation) if sf.points else []
        front = [ReportPoint(p.trial, p.size, p.quality, p.report_quality(q), p.sparsity,
                             [float(p.allocation.get(n, 0.0)) for n in layers], p.latency)
                 for p in sorted(sf.points, key=lambda p: p.size)]
        return cls(title, q, layers, front, [(p.size, p.quality) for p in sf.trials],
                   dict(sf.attrs.get(BASELINES_KEY) or {}), dict(sf.attrs.get("dense") or {}),
                   dict(sf.attrs.get("provenance") or {}), comparison, list(sf.attrs.get(LEVELS_KEY) or []),
                   sf.objectives, [(p.latency, p.quality) for p in sf.trials if p.latency is not None])


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def front_figure(data: ReportData) -> Any:
    import plotly.graph_objects as go

    q = data.quality_name
    fig = go.Figure()
    if data.cloud:
        fig.add_trace(go.Scatter(
            x=[s for s, _ in data.cloud], y=[v for _, v in data.cloud], mode="markers",
            name="trials (search split)", marker={"color": "#c7c7c7", "size": 6}))
    shown = [p for p in data.front if p.report_quality is not None]
    fig.add_trace(go.Scatter(
        x=[p.size for p in shown], y=[p.report_quality for p in shown], mode="lines+markers",
        name="front (report split)", line={"color": "#d62728", "width": 3, "shape": "hv"},
        marker={"color": "#d62728", "size": 10},
        text=[f"trial {p.trial}, sparsity {p.sparsity:.3f}" if p.sparsity is not None else f"trial {p.trial}"
              for p in shown]))
    for name, points in data.baselines.items():
        ok = sorted((p for p in points if p.get("quality") is not None and p.get("nonzero_params") is not None),
                    key=lambda p: p["nonzero_params"])
        color, dash = BASELINE_STYLE.get(name, ("#9467bd", "dashdot"))
        fig.add_trace(go.Scatter(
            x=[p["nonzero_params"] for p in ok], y=[p["quality"] for p in ok], mode="lines+markers",
            name=f"{name} baseline (report split)", line={"color": color, "dash": dash, "width": 2},
            marker={"color": color, "size": 8, "symbol": "diamond"},
            text=[f"{name} at sparsity {p['level']:.3f}" for p in ok]))
    dense = _num(data.dense.get(q))
    if dense is not None:
        fig.add_hline(y=dense, line={"color": "#555555", "dash": "dot"},
                      annotation_text=f"dense {q} {dense:.4f}", annotation_position="bottom left")
    fig.update_layout(title=f"Pareto front on the REPORT split: {q} vs nonzero parameters",
                      xaxis_title="nonzero parameters", yaxis_title=f"{q} (report split)",
                      template="plotly_white", height=560, legend={"orientation": "h", "y": -0.18})
    return fig


def latency_figure(data: ReportData) -> Any:
    """Quality against measured latency: the front's points on the REPORT split, the
    trials' search-split cloud behind them (drawn when latency is an objective)."""
    import plotly.graph_objects as go

    q = data.quality_name
    fig = go.Figure()
    if data.latency_cloud:
        fig.add_trace(go.Scatter(
            x=[t for t, _ in data.latency_cloud], y=[v for _, v in data.latency_cloud], mode="markers",
            name="trials (search split)", marker={"color": "#c7c7c7", "size": 6}))
    shown = sorted((p for p in data.front if p.report_quality is not None and p.latency is not None),
                   key=lambda p: p.latency or 0.0)
    fig.add_trace(go.Scatter(
        x=[p.latency for p in shown], y=[p.report_quality for p in shown], mode="lines+markers",
        name="front (report split)", line={"color": "#ff7f0e", "width": 3, "shape": "hv"},
        marker={"color": "#ff7f0e", "size": 10},
        text=[f"trial {p.trial}, nonzero {p.size:.0f}" for p in shown]))
    fig.update_layout(title=f"Front on the REPORT split: {q} vs measured latency",
                      xaxis_title="latency (s, median of repeats)", yaxis_title=f"{q} (report split)",
                      template="plotly_white", height=520, legend={"orientation": "h", "y": -0.18})
    return fig


def heatmap_figure(data: ReportData) -> Any:
    import plotly.graph_objects as go

    rows = [f"trial {p.trial}" + (f" ({p.sparsity:.2f})" if p.sparsity is not None else "") for p in data.front]
    fig = go.Figure(go.Heatmap(
        z=[p.allocation for p in data.front], x=data.layers, y=rows, zmin=0.0, zmax=1.0,
        colorscale="Viridis", colorbar={"title": "sparsity"},
        hovertemplate="%{y}<br>%{x}: sparsity %{z:.3f}<extra></extra>"))
    fig.update_layout(title="Per-layer sparsity of the front's points (rows by size, smallest first)",
                      xaxis={"title": "layer", "tickangle": -60, "automargin": True},
                      yaxis={"title": "front point", "automargin": True},
                      template="plotly_white", height=max(320, 90 + 28 * len(rows)))
    return fig


def _table(rows: list[tuple[str, Any]], table_id: str) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows)
    return f'<table id="{table_id}">{body}</table>'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def provenance_rows(prov: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [
        ("spec hash", prov.get("spec_hash")), ("model", prov.get("model")),
        ("model fingerprint", prov.get("model_fingerprint")), ("seed", prov.get("seed"))]
    rows += [(f"data hash: {k}", v) for k, v in sorted((prov.get("data_hashes") or {}).items())]
    rows += [(f"version: {k}", v) for k, v in sorted((prov.get("versions") or {}).items())]
    if prov.get("machine"):
        rows.append(("machine", prov["machine"]))
    return rows


def _comparison_html(c: dict[str, Any]) -> str:
    rel = c.get("relative_delta")
    how = f"{c['delta']:+.6g}" + (f" ({rel:+.2%})" if isinstance(rel, float) else "")
    ref = c.get("reference", {})
    return (f'<p id="comparison">Compared with job {c.get("previous_job_id")}'
            f'{" (warm-started from it)" if c.get("warm_started") else ""}: '
            f'<b>{html.escape(str(c["verdict"]))}</b>, hypervolume {c["hypervolume"]:.6g} vs '
            f'{c["previous_hypervolume"]:.6g}, {how}, on the {html.escape(str(c["split"]))} split '
            f'(reference: {ref.get("quality_name", "quality")} {ref.get("quality")}, '
            f'size {ref.get("size")}).</p>')


def _level_text(row: dict[str, Any], q: str) -> str:
    front, uniform = _num(row.get("front")), _num(row.get("uniform"))
    text = "front: no point this small" if front is None else (
        f"front {q} {front:.4f} (trial {row.get('trial')}, sparsity {_fmt(row.get('front_sparsity'))})")
    if uniform is not None:
        text += f"; uniform {q} {uniform:.4f}"
        if front is not None:
            text += f"; difference {front - uniform:+.4f}"
    return text


def render_report(data: ReportData) -> str:
    """The whole page as one HTML string (about 4 MB: plotly.js is inlined)."""
    from plotly.offline import get_plotlyjs

    q = data.quality_name
    front_rows = [(f"trial {p.trial}", f"nonzero {p.size:.0f}, sparsity {_fmt(p.sparsity)}, "
                   + ("" if p.latency is None else f"latency {p.latency:.4g} s, ")
                   + f"search {q} {p.search_quality:.4f}, report {q} "
                   f"{'not scored' if p.report_quality is None else format(p.report_quality, '.4f')}")
                  for p in data.front]
    level_rows = [(f"sparsity {row['level']:g}", _level_text(row, q)) for row in data.levels]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(data.title)}: prunetune report</title>",
        "<style>body{font-family:sans-serif;margin:24px;max-width:1300px}"
        "table{border-collapse:collapse;margin:8px 0 24px}th,td{border:1px solid #ddd;padding:3px 8px;"
        "text-align:left;font-size:13px}th{background:#f6f6f6}</style>",
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
        f"<h1>{html.escape(data.title)}</h1>",
        f"<p>{len(data.front)} front points (quality against {html.escape(', '.join(data.objectives))}); "
        f"{len(data.cloud)} full-fidelity trials; baselines: "
        f"{html.escape(', '.join(data.baselines) or 'none')}.</p>",
    ]
    if data.comparison:
        parts.append(_comparison_html(data.comparison))
    parts.append(front_figure(data).to_html(full_html=False, include_plotlyjs=False, div_id="front-plot"))
    if LATENCY_NAME in data.objectives:
        parts.append(latency_figure(data).to_html(full_html=False, include_plotlyjs=False, div_id="latency-plot"))
    if data.front and data.layers:
        parts.append(heatmap_figure(data).to_html(full_html=False, include_plotlyjs=False, div_id="heatmap-plot"))
    if level_rows:
        parts.append("<h2>At the front levels (report split)</h2>" + _table(level_rows, "levels-table"))
    parts.append("<h2>Front</h2><p>Points beyond <code>report.points</code> are not scored on the "
                 "report split.</p>" + _table(front_rows, "front-table"))
    parts.append("<h2>Provenance</h2>" + _table(provenance_rows(data.provenance), "provenance"))
    parts.append("</body></html>")
    return "\n".join(parts)
