"""Server-side SVG charts: points become a polyline in a responsive, labelled SVG; text is escaped."""

from __future__ import annotations

import datetime as dt

from web.charts import Series, human_bytes, line_chart


def test_line_chart_draws_points_with_labels():
    t0 = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
    points = [(t0 + dt.timedelta(minutes=i), float(i * 1000)) for i in range(10)]
    svg = str(line_chart([Series("Bytes <in>", points, "s1")], title="Throughput & more"))
    assert svg.startswith('<svg class="chart" viewBox="0 0 640 200" role="img"')
    assert 'aria-label="Throughput &amp; more"' in svg
    assert svg.count("<polyline") == 1 and "Bytes &lt;in&gt;" in svg
    assert "latest 9.0 KB" in svg and "10.0 KB" in svg  # desc and the y-axis top (nice maximum)
    assert "12:00" in svg and "12:09" in svg


def test_empty_chart_says_so_in_words():
    html = str(line_chart([Series("x", [])], title="Storage, last hour"))
    assert "<svg" not in html and "no usage recorded" in html


def test_human_bytes():
    assert human_bytes(None) == "—" and human_bytes(999) == "999 B" and human_bytes(1500) == "1.5 KB"
