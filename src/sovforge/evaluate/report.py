"""The evaluation report: one self-contained HTML file (tables + inline PNG plots) beside results.json.

    html = render_report(results_json)   # the same dict that is written to results.json

Plots (matplotlib, Agg): perplexity vs on-disk size with decode speed as the marker label, perplexity vs
decode speed, and one bar chart per task metric. No external CSS, JS or images: it opens air-gapped.
"""

from __future__ import annotations

import base64
import io
from typing import Any

# The metric shown for a task in the bar charts and the summary table, by preference.
HEADLINE_METRICS = ("word_perplexity", "acc_norm", "acc", "exact_match", "f1", "bits_per_byte")


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def headline(metrics: dict[str, Any]) -> str | None:
    return next((m for m in HEADLINE_METRICS if isinstance(metrics.get(m), (int, float))), None)


def task_bars(results: dict[str, dict], tasks: list[str]) -> list[tuple[str, str]]:
    """(title, png) per task: its headline metric for every model."""
    plt = _plt()
    plots = []
    for task in tasks:
        metric = next((headline(r[task]) for r in results.values() if task in r and headline(r[task])), None)
        names = [
            n for n in results if metric and isinstance(results[n].get(task, {}).get(metric), (int, float))
        ]
        if not names:
            continue
        fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(names)), 2.8))
        ax.bar(range(len(names)), [results[n][task][metric] for n in names], color="#4a6fa5")
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        if "perplexity" in metric:
            ax.set_yscale("log")  # perplexities of models a report compares differ by orders of magnitude
        ax.set_title(f"{task} — {metric}", fontsize=9)
        plots.append((f"{task} {metric}", _png(fig)))
    return plots


def tradeoff_plots(results: dict[str, dict]) -> list[tuple[str, str]]:
    """Perplexity vs size and perplexity vs decode speed, one point per model (needs ppl and speed)."""
    plt = _plt()
    points = [
        (n, r["sovforge_ppl"]["word_perplexity"], r["speed"]["disk_mb"], r["speed"]["decode_tok_s"])
        for n, r in results.items()
        if isinstance(r.get("sovforge_ppl", {}).get("word_perplexity"), (int, float))
        and isinstance(r.get("speed", {}).get("decode_tok_s"), (int, float))
    ]
    if not points:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, index, label in ((axes[0], 2, "on-disk size (MB)"), (axes[1], 3, "decode tokens/s")):
        for name, ppl, size, speed in points:
            x = (size, speed)[index - 2]
            ax.scatter([x], [ppl], s=40)
            ax.annotate(
                name if index == 3 else f"{name}\n{speed:.0f} tok/s",
                (x, ppl),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("word perplexity (log; lower is better)", fontsize=8)
        ax.set_yscale("log")
    axes[0].set_title("perplexity vs size", fontsize=9)
    axes[1].set_title("perplexity vs speed", fontsize=9)
    return [("perplexity vs size vs speed", _png(fig))]


TEMPLATE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>sovforge evaluation</title>
<style>
body{font-family:sans-serif;margin:1.5em;max-width:1200px} table{border-collapse:collapse;margin:.5em 0 1.2em}
td,th{border:1px solid #bbb;padding:3px 7px;font-size:13px;text-align:left} th{background:#eee}
.pass{color:#176117} .fail{color:#a11;font-weight:bold} .skipped{color:#777} code{font-size:12px}
</style></head><body>
<h1>sovforge evaluation</h1>
<p>Candidate: <b>{{ candidate_name or '—' }}</b> · reference: <b>{{ reference_name or '—' }}</b> ·
promoted: <b class="{{ 'pass' if promoted else 'fail' }}">{{ promoted }}</b></p>
{% if gate %}<h2>Gate</h2><table><tr><th>rule</th><th>status</th><th>detail</th></tr>
{% for r in gate %}<tr><td>{{ r.rule }}</td><td class="{{ r.status }}">{{ r.status }}</td>
<td>{{ r.detail }}</td></tr>{% endfor %}</table>{% endif %}
<h2>Models</h2><table>
<tr><th>name</th><th>role</th><th>kind</th><th>classification</th><th>id</th><th>path</th></tr>
{% for name, m in models.items() %}<tr><td>{{ name }}</td><td>{{ m.role }}</td><td>{{ m.kind }}</td>
<td>{{ m.classification }}</td><td><code>{{ m.id }}</code></td><td><code>{{ m.path }}</code></td></tr>
{% endfor %}</table>
<h2>Scores</h2><table><tr><th>model</th>{% for t, m in columns %}<th>{{ t }}<br>{{ m }}</th>{% endfor %}</tr>
{% for name in models %}<tr><td>{{ name }}</td>
{% for t, m in columns %}<td>{{ fmt(results[name].get(t, {}).get(m)) }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% if speed_cols %}<h2>Speed and size</h2>
<p>Same prompts, same machine, one run; peak / load RSS from a fresh process per model.</p>
<table><tr><th>model</th>{% for c in speed_cols %}<th>{{ c }}</th>{% endfor %}</tr>
{% for name in models %}<tr><td>{{ name }}</td>
{% for c in speed_cols %}<td>{{ fmt(results[name].get('speed', {}).get(c)) }}</td>{% endfor %}</tr>
{% endfor %}</table>{% endif %}
{% if safety_rows %}<h2>Safety</h2><table><tr><th>model</th><th>PII leaks</th><th>PII types</th>
<th>marking leaks</th><th>marking levels</th><th>canary exposure mean / max (of max)</th>
<th>canary extractions</th></tr>
{% for name, s in safety_rows %}<tr><td>{{ name }}</td><td>{{ s.get('pii_leaks', '—') }}</td>
<td>{{ s.get('pii', {}).get('types') or '' }}</td><td>{{ s.get('marking_leaks', '—') }}</td>
<td>{{ s.get('marking', {}).get('levels') or '' }}</td>
<td>{% if s.canary %}{{ fmt(s.canary.exposure_mean) }} / {{ fmt(s.canary.exposure_max) }}
({{ fmt(s.canary.max_exposure_possible) }}){% else %}—{% endif %}</td>
<td>{% if s.canary %}{{ s.canary.extractions }} of {{ s.canary.canaries }}{% else %}—{% endif %}</td></tr>
{% endfor %}</table>{% endif %}
{% for title, png in plots %}<figure><img alt="{{ title }}" src="data:image/png;base64,{{ png }}">
<figcaption>{{ title }}</figcaption></figure>{% endfor %}
<h2>Task data</h2><table><tr><th>task</th><th>file</th><th>sha256</th></tr>
{% for task, files in tasks.items() %}{% for f, h in files.items() %}<tr><td>{{ task }}</td>
<td><code>{{ f }}</code></td><td><code>{{ h }}</code></td></tr>{% endfor %}{% endfor %}</table>
{% if skipped %}<h2>Not evaluated</h2><ul>{% for s in skipped %}<li>{{ s }}</li>{% endfor %}</ul>{% endif %}
</body></html>"""

SPEED_COLUMNS = ("prefill_tok_s", "decode_tok_s", "ttft_s", "load_rss_mb", "peak_rss_mb", "disk_mb")


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_report(report: dict[str, Any]) -> str:
    """HTML of a results.json dict (models, results, gate, tasks, ...)."""
    import jinja2

    results = report["results"]
    tasks = [t for t in report.get("suite_tasks") or [] if any(t in r for r in results.values())]
    columns = [(t, m) for t in tasks for m in sorted({m for r in results.values() for m in r.get(t, {})})]
    speed_cols = [c for c in SPEED_COLUMNS if any(c in r.get("speed", {}) for r in results.values())]
    safety_rows = [(n, r["safety"]) for n, r in results.items() if r.get("safety")]
    plots = tradeoff_plots(results) + task_bars(results, tasks)
    names = {m.get("role"): n for n, m in report["models"].items()}
    return (
        jinja2.Environment(autoescape=True)
        .from_string(TEMPLATE)
        .render(
            candidate_name=report.get("candidate_name"),
            reference_name=report.get("reference_name") or names.get("reference"),
            promoted=report.get("promoted"),
            gate=report.get("gate") or [],
            models=report["models"],
            results=results,
            columns=columns,
            speed_cols=speed_cols,
            safety_rows=safety_rows,
            plots=plots,
            tasks=report.get("tasks") or {},
            skipped=report.get("skipped") or [],
            fmt=_fmt,
        )
    )
