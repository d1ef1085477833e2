"""The chart widgets: data in, a readable description out, painting at any size."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor, QImage, QPalette
from pytestqt.qtbot import QtBot

from app.ui.charts import (
    BarChart,
    LineChart,
    describe_bars,
    describe_series,
    format_value,
    scale,
    value_range,
)


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0, "", "0"),
        (3, "runs", "3 runs"),
        (1234.56, "ms", "1,235 ms"),
        (2.345, "s", "2.3 s"),
        (0.0123, "", "0.012"),
        (-5, "", "-5"),
    ],
)
def test_format_value(value: float, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def test_value_range_starts_at_zero_and_is_never_empty() -> None:
    assert value_range([]) == (0.0, 1.0)
    assert value_range([5.0, 7.0]) == (0.0, 7.0)
    assert value_range([-2.0, 3.0]) == (-2.0, 3.0)
    assert value_range([0.0, 0.0]) == (0.0, 1.0)
    assert scale(5.0, 0.0, 10.0, 100.0, 0.0) == 50.0
    assert scale(5.0, 1.0, 1.0, 7.0, 9.0) == 7.0


def test_descriptions_summarise_the_data() -> None:
    assert describe_series("Runs", []) == "Runs: no data."
    text = describe_series("Runs", [(1, 2), (2, 9), (3, 4)], "runs")
    assert text == "Runs: 3 points, from 2 runs to 4 runs; lowest 2 runs, highest 9 runs."
    assert describe_bars([]) == "No data."
    assert describe_bars([("p50", 120), ("p95", 480)], "ms") == "p50: 120 ms; p95: 480 ms."


def render(widget: LineChart | BarChart, width: int, height: int) -> QImage:
    widget.resize(width, height)
    image = QImage(widget.size(), QImage.Format.Format_ARGB32)
    image.fill(QColor("white"))
    widget.render(image)
    return image


def accent_pixels(image: QImage, accent: QColor) -> int:
    count = 0
    for y in range(0, image.height(), 2):
        for x in range(0, image.width(), 2):
            if image.pixelColor(x, y).rgb() == accent.rgb():
                count += 1
    return count


@pytest.mark.parametrize(("width", "height"), [(120, 60), (320, 140), (900, 400), (10, 10)])
def test_line_chart_paints_at_several_sizes(qtbot: QtBot, width: int, height: int) -> None:
    chart = LineChart()
    qtbot.addWidget(chart)
    render(chart, width, height)  # empty: "No data yet", no warning
    chart.set_series("Runs per day", [(3.0, 1.0), (1.0, 4.0), (2.0, 0.0)], "runs")
    assert chart.points == [(1.0, 4.0), (2.0, 0.0), (3.0, 1.0)]
    assert chart.accessibleName() == "Runs per day"
    assert "3 points" in chart.accessibleDescription()
    image = render(chart, width, height)
    if width >= 120:
        assert accent_pixels(image, chart.palette().color(QPalette.ColorRole.Highlight)) > 0


@pytest.mark.parametrize(("width", "height"), [(120, 60), (320, 140), (900, 400), (10, 10)])
def test_bar_chart_paints_at_several_sizes(qtbot: QtBot, width: int, height: int) -> None:
    chart = BarChart()
    qtbot.addWidget(chart)
    render(chart, width, height)
    chart.set_bars([("p50", 120.0), ("p95", 480.0)], "ms")
    assert chart.bars == [("p50", 120.0), ("p95", 480.0)]
    assert chart.accessibleDescription() == "p50: 120 ms; p95: 480 ms."
    image = render(chart, width, height)
    if width >= 120:
        assert accent_pixels(image, chart.palette().color(QPalette.ColorRole.Highlight)) > 0


def test_charts_follow_the_palette(qtbot: QtBot) -> None:
    chart = BarChart()
    qtbot.addWidget(chart)
    chart.set_bars([("one", 1.0)])
    palette = chart.palette()
    palette.setColor(QPalette.ColorRole.Highlight, QColor("#ff8800"))
    palette.setColor(QPalette.ColorRole.WindowText, QColor("#eeeeee"))
    chart.setPalette(palette)
    image = render(chart, 200, 100)
    assert accent_pixels(image, QColor("#ff8800")) > 0


def test_empty_data_clears_the_chart(qtbot: QtBot) -> None:
    chart = LineChart()
    qtbot.addWidget(chart)
    chart.set_series("Latency", [(1.0, 2.0)], "ms")
    chart.set_series("Latency", [], "ms")
    assert chart.points == []
    assert chart.accessibleDescription() == "Latency: no data."
    image = render(chart, 200, 100)
    assert accent_pixels(image, chart.palette().color(QPalette.ColorRole.Highlight)) == 0
    bars = BarChart()
    qtbot.addWidget(bars)
    bars.set_bars([])
    assert bars.accessibleDescription() == "No data."
