"""Server-drawn charts: what they draw, and that no label can inject markup."""

from __future__ import annotations

import math
import re

from mlops.dashboard.charts import Line, line_chart, sparkline


def test_a_label_or_series_name_is_escaped() -> None:
    chart = line_chart('<script>x</script>"', [Line("<b>rev</b>", [1.0, 2.0])])
    assert "<script>" not in chart
    assert "<b>" not in chart
    assert "&lt;script&gt;" in chart
    assert 'aria-label="&lt;script&gt;x&lt;/script&gt;&#34;"' in chart
    assert "&lt;" in sparkline("<i>", [1.0, 2.0])


def test_gaps_and_values_that_are_not_finite_break_the_line() -> None:
    chart = line_chart("c", [Line("a", [1.0, 2.0, None, 3.0, 4.0, math.nan, math.inf])])
    assert chart.count("<polyline") == 2
    assert "nan" not in chart
    assert "inf" not in chart


def test_a_threshold_is_drawn_and_a_log_axis_leaves_out_what_is_not_positive() -> None:
    chart = line_chart(
        "e",
        [Line("e", [0.0, 1.0, 10.0, 100.0])],
        threshold=20.0,
        log=True,
        threshold_name="fails at",
    )
    assert "fails at 20" in chart
    assert chart.count('class="threshold"') == 1
    assert len(re.findall(r"\d+\.\d,\d+\.\d", chart)) == 3


def test_an_interval_is_drawn_as_a_band() -> None:
    chart = line_chart("ratio", [Line("r", [1.0, 1.2], [(0.5, 2.0), (0.9, 1.5)])], threshold=1.5)
    assert chart.count("<polygon") == 1


def test_empty_and_flat_series_still_draw() -> None:
    assert "<svg" in line_chart("none", [])
    assert "<polyline" in line_chart("flat", [Line("f", [3.0, 3.0, 3.0])])
    assert "<polyline" not in sparkline("one", [1.0])
