"""The audit report as one self-contained HTML file (docs/KEYS.md, "Audit report").

No network: no script, no external font, style sheet or image; CSS inline; charts are
inline SVG drawn here. A Content-Security-Policy meta (``default-src 'none'``) makes a
browser refuse any request even if something slipped through. Every text from the audit
is attacker-influenced (document ids, reasons, principals): it passes through
:func:`_e` (``html.escape`` with quotes) before it reaches the page, in tables and in SVG
alike. Readable on paper: ``@media print`` drops colours and keeps table headers on each
page.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence

from pqfile.usecases.audit_report import AuditReport, DayActivity, PoolSample

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'"

_CSS = """
:root { --ink: #1b1f24; --muted: #5b6570; --line: #d6dbe1; --ok: #1a7f37; --bad: #b42318;
        --c1: #2f6fb0; --c2: #b26b00; --c3: #b42318; --c4: #6e4ab0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 2px solid var(--line);
     padding-bottom: 4px; }
.meta { color: var(--muted); margin: 0 0 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 130px; }
.card b { display: block; font-size: 20px; }
.ok { color: var(--ok); } .bad { color: var(--bad); }
.status { font-weight: 600; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 12.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; }
th { background: #f3f5f7; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace;
              font-size: 12px; }
.empty { color: var(--muted); font-style: italic; }
svg { max-width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: var(--ink); }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  h2 { break-after: avoid; }
  table { font-size: 8.5pt; }
  thead { display: table-header-group; }
  tr, .card, svg { break-inside: avoid; }
  th { background: none; border-bottom: 1.5px solid #000; }
  .card { border-color: #000; }
}
"""

_SERIES = (("decryptions", "var(--c1)", "decryptions"),
           ("encryptions", "var(--c4)", "encryptions"),
           ("refusals", "var(--c2)", "refusals"),
           ("failures", "var(--c3)", "failures"))  # fmt: skip
#: Maintenance runs listed under the pool chart (the chart shows every one in the model).
POOL_TABLE_ROWS = 100
_SUITE_COLOURS = ("var(--c1)", "var(--c4)", "var(--c2)", "var(--c3)")


def _e(value: object) -> str:
    """Escaped text (None as an em dash)."""
    return "\u2014" if value is None else html.escape(str(value), quote=True)


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: Iterable[int] = (),
    empty: str = "none in this period",
) -> str:  # fmt: skip
    num = set(numeric)
    head = "".join(f'<th{" class=num" if i in num else ""}>{_e(h)}</th>'
                   for i, h in enumerate(headers))  # fmt: skip
    body = []
    for row in rows:
        cells = "".join(f'<td{" class=num" if i in num else ""}>{_e(v)}</td>'
                        for i, v in enumerate(row))  # fmt: skip
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return f'<p class="empty">{_e(empty)}</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _omitted(report: AuditReport, section: str) -> str:
    n = report.omitted.get(section, 0)
    if not n:
        return ""
    return (f'<p class="empty">{n} more row(s) not listed '
            "(use --format json or a shorter period)</p>")


def _pool_note(report: AuditReport) -> str:
    hidden = len(report.pool) - POOL_TABLE_ROWS
    if hidden <= 0:
        return ""
    return (f'<p class="empty">the table shows the last {POOL_TABLE_ROWS} runs; '
            f"the chart all {len(report.pool)}</p>")


def _legend(items: Iterable[tuple[str, str]]) -> str:
    spans = "".join(f'<span><i style="background:{colour}"></i>{_e(label)}</span>'
                    for label, colour in items)  # fmt: skip
    return f'<p class="legend">{spans}</p>'


def activity_chart(days: Sequence[DayActivity]) -> str:
    """Grouped bars per UTC day: decryptions, encryptions, refusals, failures."""
    if not days:
        return '<p class="empty">no activity in this period</p>'
    width, height, left, bottom, top = 760, 220, 44, 34, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = _nice(max(max(getattr(d, s) for s, _, _ in _SERIES) for d in days))
    slot = plot_w / len(days)
    bar = max(1.0, min(18.0, slot * 0.8 / len(_SERIES)))
    parts = [f'<svg role="img" aria-label="activity per day" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}">']  # fmt: skip
    for tick in range(5):
        value = peak * tick // 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#d6dbe1" stroke-width="1"/>')  # fmt: skip
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>')
    every = max(1, len(days) // 12)
    for i, day in enumerate(days):
        x0 = left + slot * i + (slot - bar * len(_SERIES)) / 2
        for j, (name, colour, label) in enumerate(_SERIES):
            value = getattr(day, name)
            h = plot_h * value / peak
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{_e(day.day)}: {value} '
                f"{_e(label)}</title></rect>"
            )
        if i % every == 0:
            parts.append(f'<text x="{left + slot * (i + 0.5):.1f}" y="{height - 14}" '
                         f'text-anchor="middle">{_e(day.day[5:])}</text>')  # fmt: skip
    parts.append("</svg>")
    return _legend((label, colour) for _, colour, label in _SERIES) + "".join(parts)


def pool_chart(samples: Sequence[PoolSample]) -> str:
    """Active keys per suite at each pool-maintenance run (a line per suite)."""
    if not samples:
        return '<p class="empty">no pool maintenance in this period</p>'
    suites = sorted({s for sample in samples for s in sample.active})
    if not suites:
        return '<p class="empty">no active keys recorded</p>'
    width, height, left, bottom, top = 760, 200, 44, 34, 10
    plot_w, plot_h = width - left - 16, height - bottom - top
    peak = _nice(max(max(sample.active.values(), default=0) for sample in samples))
    step = plot_w / max(1, len(samples) - 1)
    parts = [f'<svg role="img" aria-label="active keys per suite" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}">']  # fmt: skip
    for tick in range(5):
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" x2="{width - 16}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#d6dbe1" stroke-width="1"/>')  # fmt: skip
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{peak * tick // 4}</text>")  # fmt: skip
    colours = {s: _SUITE_COLOURS[i % len(_SUITE_COLOURS)] for i, s in enumerate(suites)}
    for suite in suites:
        points = []
        for i, sample in enumerate(samples):
            x = left + step * i if len(samples) > 1 else left + plot_w / 2
            y = top + plot_h - plot_h * sample.active.get(suite, 0) / peak
            points.append((x, y, sample.active.get(suite, 0), sample.occurred_at))
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colours[suite]}" '
                     'stroke-width="2"/>')  # fmt: skip
        for x, y, value, when in points:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colours[suite]}">'
                         f"<title>{_e(suite)} {value} at {_e(when)}</title></circle>")  # fmt: skip
    every = max(1, len(samples) // 8)
    for i, sample in enumerate(samples):
        if i % every == 0:
            x = left + step * i if len(samples) > 1 else left + plot_w / 2
            parts.append(f'<text x="{x:.1f}" y="{height - 14}" text-anchor="middle">'
                         f"{_e(sample.occurred_at[5:16].replace('T', ' '))}</text>")  # fmt: skip
    parts.append("</svg>")
    return _legend((s, colours[s]) for s in suites) + "".join(parts)


def _nice(peak: int) -> int:
    """The axis top: a multiple of 4 at or above ``peak``, so the 4 gridlines are integers."""
    return max(1, -(-peak // 4)) * 4


def _t(timestamp: str) -> str:
    """``YYYY-MM-DD HH:MM:SS`` of a report timestamp (UTC; the JSON keeps microseconds)."""
    return timestamp[:19].replace("T", " ")


def _card(label: str, value: object, cls: str = "") -> str:
    return f'<div class="card"><b class="{cls}">{_e(value)}</b>{_e(label)}</div>'


def _chain(report: AuditReport) -> str:
    c = report.chain
    if c.ok:
        status = (f'<p class="status ok">Chain verified: {c.rows} rows, head {c.head_seq} '
                  f"<code>{_e(c.head_hash)}</code></p>")  # fmt: skip
    else:
        status = (f'<p class="status bad">Chain BROKEN at row {_e(c.broken_seq)}: '
                  f"{_e(c.reason)} ({c.rows} rows verified before it)</p>")  # fmt: skip
    return status


def _digests(report: AuditReport) -> str:
    if report.digests is None:
        return '<p class="empty">no digests configured</p>'
    bad = sum(1 for d in report.digests if not d.verified)
    summary = (f'<p class="status {"bad" if bad else "ok"}">{len(report.digests)} digest(s), '
               f"{bad} not verified</p>")  # fmt: skip
    return summary + _table(
        ("digest", "from", "to", "tree size", "root hash", "verified", "problem"),
        ((d.name, d.period_start, d.period_end, d.tree_size, d.root_hash,
          "yes" if d.verified else "NO", d.problem) for d in report.digests),
        numeric=(3,), empty="no digest in this period",
    )  # fmt: skip


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def render_html(report: AuditReport) -> str:
    """The whole page (UTF-8 text)."""
    decrypted = len(report.decryptions) + report.omitted.get("decryptions", 0)
    refused = len(report.refusals) + report.omitted.get("refusals", 0)
    failed = len(report.failures) + report.omitted.get("failures", 0)
    readers = len({d.actor for d in report.decryptions})
    cards = "".join((
        _card("audit rows in period", report.rows_in_period),
        _card("decryptions", decrypted),
        _card("distinct readers", readers),
        _card("refusals", refused, "bad" if refused else ""),
        _card("failures", failed, "bad" if failed else ""),
        _card("key lifecycle events", len(report.key_events)),
        _card("chain", "verified" if report.chain.ok else "BROKEN",
              "ok" if report.chain.ok else "bad"),
    ))  # fmt: skip
    sections: list[tuple[str, str, Callable[[], str]]] = [
        ("Activity per day (UTC)", "activity", lambda: activity_chart(report.activity)),
        ("Who decrypted what, and when", "decryptions", lambda: _table(
            ("when (UTC)", "seq", "who", "document", "key", "delivery", "bytes", "request"),
            ((_t(d.occurred_at), d.seq, d.actor, d.document_id, d.key_id, d.delivery, d.size,
              d.request_id) for d in report.decryptions), numeric=(1, 6),
        ) + _omitted(report, "decryptions")),
        ("Decryption attempts without an outcome", "unfinished", lambda: _table(
            ("when (UTC)", "seq", "who", "document", "key", "request"),
            ((_t(d.occurred_at), d.seq, d.actor, d.document_id, d.key_id, d.request_id)
             for d in report.unfinished_attempts), numeric=(1,),
        )),
        ("Refusals", "refusals", lambda: _table(
            ("when (UTC)", "seq", "operation", "who", "document", "reason"),
            ((_t(r.occurred_at), r.seq, r.operation, r.actor, r.document_id, r.reason)
             for r in report.refusals), numeric=(1,),
        ) + _omitted(report, "refusals")),
        ("Failures", "failures", lambda: _table(
            ("when (UTC)", "seq", "operation", "who", "document", "key", "reason"),
            ((_t(r.occurred_at), r.seq, r.operation, r.actor, r.document_id, r.key_id, r.reason)
             for r in report.failures), numeric=(1,),
        ) + _omitted(report, "failures")),
        ("Key lifecycle", "keys", lambda: _table(
            ("when (UTC)", "seq", "key", "suite", "event", "outcome", "by", "detail"),
            ((_t(k.occurred_at), k.seq, k.key_id, k.suite, k.event, k.outcome, k.actor, k.detail)
             for k in report.key_events), numeric=(1,),
        ) + _omitted(report, "key_events")),
        ("Key pool health (active keys per suite at each maintenance run)", "pool",
         lambda: pool_chart(report.pool) + _table(
            ("when (UTC)", "seq", "active", "created", "queued for rotation"),
            ((_t(p.occurred_at), p.seq, _pairs(p.active), _pairs(p.created), p.queued)
             for p in report.pool[-POOL_TABLE_ROWS:]), numeric=(1, 4),
        ) + _pool_note(report) + _omitted(report, "pool")),
        ("Chain verification", "chain", lambda: _chain(report)),
        ("Signed digests", "digests", lambda: _digests(report)),
        ("Rows by operation and outcome", "totals", lambda: _table(
            ("operation/outcome", "rows"), sorted(report.totals.items()), numeric=(1,),
        )),
    ]  # fmt: skip
    body = "".join(_section(title, render(), anchor) for title, anchor, render in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>PQFile audit report {_e(report.since[:10])} to {_e(report.until[:10])}</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>PQFile audit report</h1>"
        f'<p class="meta">Period {_e(report.since)} to {_e(report.until)} (end excluded) '
        f"&middot; generated {_e(report.generated_at)}</p>"
        f'<div class="cards">{cards}</div>{body}</body></html>\n'
    )


def _pairs(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(values.items())) or "\u2014"
