"""The monthly reconciliation report: an HTML page with real plots, and a CSV for every table.

Plots are drawn with matplotlib (Agg, no screen) and embedded as PNG data, so the page is one
self-contained file a region can archive or mail. Counts, record ids and keyed hashes only.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections import Counter, defaultdict
from pathlib import Path

from vaxreport.reconcile.month import CLASSES, Reconciliation

COLOURS = {
    "accepted": "#2e7d32",
    "duplicate": "#81c784",
    "rejected_local": "#f9a825",
    "rejected_register": "#ef6c00",
    "excluded": "#9e9e9e",
    "voided": "#bdbdbd",
    "failed_or_pending": "#1e88e5",
    "missing": "#c62828",
}


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _caregiver_plot(caregiver: str, per_unit: dict[str, Counter]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = sorted(per_unit)
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(units)))
    left = [0] * len(units)
    for klass in CLASSES:
        values = [per_unit[u][klass] for u in units]
        if any(values):
            ax.barh(units, values, left=left, color=COLOURS[klass], label=klass)
            left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_title(caregiver)
    ax.set_xlabel("records")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)


def _trend_plot(trend: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.6))
    months = [t["month"] for t in trend]
    ax.plot(months, [100 * t["reject_rate"] for t in trend], marker="o", label="rejected %")
    ax.plot(months, [100 * t["missing_rate"] for t in trend], marker="s", color="#c62828", label="missing %")
    ax.set_ylabel("% of records")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(r.get(c, '')) if r.get(c) is not None else '')}</td>" for c in columns)
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write(result: Reconciliation, trend: list[dict], out_dir: Path, threshold: int) -> Path:
    """Write the month's folder (replacing an earlier one's files); return the HTML page."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = result.class_counts()
    summary = [{"class": k, "records": v} for k, v in counts.items()]
    grouped = Counter(
        (r.source, r.caregiver_name, r.caregiver_hsa_id, r.care_unit_name, r.care_unit_hsa_id, r.vaccine, r.klass)
        for r in result.records
    )
    by_unit = [
        dict(
            zip(
                ["source", "caregiver", "caregiver_hsa_id", "care_unit", "care_unit_hsa_id", "vaccine", "class"],
                k,
                strict=True,
            )
        )
        | {"records": n}
        for k, n in sorted(grouped.items())
    ]
    missing = [
        {
            "source": r.source,
            "record_id": r.record_id,
            "person_key": r.person_key,
            "caregiver": r.caregiver_name,
            "care_unit": r.care_unit_name,
            "vaccine": r.vaccine,
        }
        for r in result.records
        if r.klass == "missing"
    ]
    differences = result.unit_differences()
    tables = {
        "summary.csv": (summary, ["class", "records"]),
        "by_unit.csv": (
            by_unit,
            ["source", "caregiver", "caregiver_hsa_id", "care_unit", "care_unit_hsa_id", "vaccine", "class", "records"],
        ),
        "register_counts.csv": (
            differences,
            [
                "caregiver",
                "care_unit",
                "care_unit_hsa_id",
                "held",
                "register_count",
                "difference",
                "missing",
                "unexplained",
            ],
        ),
        "missing.csv": (missing, ["source", "record_id", "person_key", "caregiver", "care_unit", "vaccine"]),
        "trend.csv": (trend, ["month", "records", "reject_rate", "missing_rate"]),
    }
    for name, (rows, columns) in tables.items():
        _write_csv(out_dir / name, rows, columns)

    per_caregiver: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for r in result.records:
        per_caregiver[r.caregiver_name or r.caregiver_hsa_id][r.care_unit_name or r.care_unit_hsa_id][r.klass] += 1
    plots = "".join(
        f'<figure><img alt="{html.escape(cg)}" src="data:image/png;base64,{_caregiver_plot(cg, units)}">'
        f"<figcaption>{html.escape(cg)}</figcaption></figure>"
        for cg, units in sorted(per_caregiver.items())
    )
    trend_img = f'<img alt="trend" src="data:image/png;base64,{_trend_plot(trend)}">' if trend else ""
    verdict = (
        "OK"
        if counts["missing"] == 0 and result.unexplained() <= threshold
        else f"ATTENTION: {counts['missing']} missing, unexplained difference {result.unexplained()}"
    )
    month = result.month.isoformat()[:7]
    page = f"""<!doctype html><html lang="sv"><meta charset="utf-8"><title>Avstämning {month}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}figure{{display:inline-block}}</style>
<body><h1>Avstämning / Reconciliation {month}</h1>
<p id="verdict"><strong>{html.escape(verdict)}</strong></p>
<h2>Sammanfattning / Summary</h2><div id="summary">{_table(summary, ["class", "records"])}</div>
<p>CSV: {" ".join(f'<a href="{n}">{n}</a>' for n in tables)}</p>
<h2>Per vårdgivare / By caregiver</h2>{plots}
<h2>Trend (12 mån)</h2>{trend_img}
<h2>Registrets antal / Register counts</h2>{_table(differences, tables["register_counts.csv"][1])}
<h2>Saknas / Missing</h2>{_table(missing, tables["missing.csv"][1])}
<h2>Detaljer / Details</h2>{_table(by_unit, tables["by_unit.csv"][1])}
<script>
// marks the page once every plot has loaded, so a browser check can tell a broken image
window.addEventListener("load", () => {{
  const images = [...document.images];
  document.body.dataset.images = images.length;
  document.body.dataset.imagesOk = images.every(i => i.complete && i.naturalWidth > 0);
}});
</script>
</html>
"""
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
