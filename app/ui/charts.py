"""Two small chart widgets painted with QPainter (no QtCharts in PySide6-Essentials).

:class:`LineChart` draws one series of (x, y) points; :class:`BarChart` draws
labelled bars. Both take their colours from the widget's palette, so they
follow a light or dark theme, never animate, and keep an accessible
description that says in words what the chart shows (a screen reader cannot
read a picture). The arithmetic (ranges, scaling, the summary) is in plain
functions so it is tested without painting.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

MARGIN = 6.0
MIN_SIZE = QSize(120, 60)
HINT_SIZE = QSize(320, 140)


def format_value(value: float, unit: str = "") -> str:
    """``1234.5, "ms"`` -> ``"1,234.5 ms"``: short and readable."""
    if value == int(value) or abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2g}"
    return f"{text} {unit}".strip()


def value_range(values: Sequence[float]) -> tuple[float, float]:
    """The (low, high) that the axis spans: from zero when all are positive, never empty."""
    if not values:
        return 0.0, 1.0
    low, high = min(0.0, *values), max(0.0, *values)
    if high == low:
        high = low + 1.0
    return low, high


def scale(value: float, low: float, high: float, start: float, end: float) -> float:
    """Map ``value`` from [low, high] onto [start, end] (end may be below start)."""
    if high == low:
        return start
    return start + (value - low) / (high - low) * (end - start)


def describe_series(name: str, points: Sequence[tuple[float, float]], unit: str = "") -> str:
    """One sentence for a screen reader about a line chart."""
    if not points:
        return f"{name}: no data."
    ys = [y for _, y in points]
    return (
        f"{name}: {len(points)} points, from {format_value(ys[0], unit)} "
        f"to {format_value(ys[-1], unit)}; lowest {format_value(min(ys), unit)}, "
        f"highest {format_value(max(ys), unit)}."
    )


def describe_bars(bars: Sequence[tuple[str, float]], unit: str = "") -> str:
    """One sentence for a screen reader about a bar chart."""
    if not bars:
        return "No data."
    return "; ".join(f"{label}: {format_value(value, unit)}" for label, value in bars) + "."


class _Chart(QWidget):
    """What both charts share: size, palette colours, the empty state."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(MIN_SIZE)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._unit = ""

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return HINT_SIZE

    def _accent(self) -> QColor:
        return self.palette().color(QPalette.ColorRole.Highlight)

    def _text_colour(self) -> QColor:
        return self.palette().color(QPalette.ColorRole.WindowText)

    def _grid_colour(self) -> QColor:
        colour = QColor(self._text_colour())
        colour.setAlphaF(0.25)
        return colour

    def _plot_rect(self) -> QRectF:
        line = float(self.fontMetrics().height())
        return QRectF(self.rect()).adjusted(MARGIN, MARGIN + line, -MARGIN, -MARGIN - line)

    def _paint_empty(self, painter: QPainter) -> None:
        painter.setPen(self._text_colour())
        painter.drawText(QRectF(self.rect()), Qt.AlignmentFlag.AlignCenter, "No data yet")

    def _paint_axis(
        self, painter: QPainter, plot: QRectF, low: float, high: float, *, label: bool = True
    ) -> None:
        """The zero line, and the top of the scale unless each value is labelled anyway."""
        painter.setPen(QPen(self._grid_colour(), 1.0))
        zero = scale(0.0, low, high, plot.bottom(), plot.top())
        painter.drawLine(QPointF(plot.left(), zero), QPointF(plot.right(), zero))
        if not label:
            return
        painter.setPen(self._text_colour())
        top = QRectF(plot.left(), MARGIN, plot.width(), plot.top() - MARGIN)
        painter.drawText(top, Qt.AlignmentFlag.AlignLeft, format_value(high, self._unit))


class LineChart(_Chart):
    """One named series of (x, y) points, x ascending (a time, an index)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._name = ""
        self._points: list[tuple[float, float]] = []
        self.setAccessibleName("Line chart")
        self.setAccessibleDescription(describe_series("Chart", []))

    @property
    def points(self) -> list[tuple[float, float]]:
        return list(self._points)

    def set_series(self, name: str, points: Sequence[tuple[float, float]], unit: str = "") -> None:
        self._name = name
        self._points = sorted((float(x), float(y)) for x, y in points)
        self._unit = unit
        self.setAccessibleName(name)
        self.setAccessibleDescription(describe_series(name, self._points, unit))
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            if not self._points:
                self._paint_empty(painter)
                return
            plot = self._plot_rect()
            low, high = value_range([y for _, y in self._points])
            self._paint_axis(painter, plot, low, high)
            self._paint_line(painter, plot, low, high)
        finally:
            painter.end()

    def _paint_line(self, painter: QPainter, plot: QRectF, low: float, high: float) -> None:
        xs = [x for x, _ in self._points]
        x_low, x_high = min(xs), max(xs)
        path = QPainterPath()
        for index, (x, y) in enumerate(self._points):
            px = (
                scale(x, x_low, x_high, plot.left(), plot.right())
                if x_high > x_low
                else plot.center().x()
            )
            point = QPointF(px, scale(y, low, high, plot.bottom(), plot.top()))
            if index == 0:
                path.moveTo(point)
            else:
                path.lineTo(point)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(self._accent())
            painter.drawEllipse(point, 2.0, 2.0)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(self._accent(), 2.0))
        painter.drawPath(path)
        painter.setPen(self._text_colour())
        bottom = QRectF(plot.left(), plot.bottom(), plot.width(), self.height() - plot.bottom())
        painter.drawText(bottom, Qt.AlignmentFlag.AlignRight, self._name)


class BarChart(_Chart):
    """Labelled bars side by side (p50 / p95 latency, counts per day)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._bars: list[tuple[str, float]] = []
        self.setAccessibleName("Bar chart")
        self.setAccessibleDescription(describe_bars([]))

    @property
    def bars(self) -> list[tuple[str, float]]:
        return list(self._bars)

    def set_bars(self, bars: Sequence[tuple[str, float]], unit: str = "") -> None:
        self._bars = [(str(label), float(value)) for label, value in bars]
        self._unit = unit
        self.setAccessibleDescription(describe_bars(self._bars, unit))
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        try:
            if not self._bars:
                self._paint_empty(painter)
                return
            plot = self._plot_rect()
            low, high = value_range([value for _, value in self._bars])
            self._paint_axis(painter, plot, low, high, label=False)
            self._paint_bars(painter, plot, low, high)
        finally:
            painter.end()

    def _paint_bars(self, painter: QPainter, plot: QRectF, low: float, high: float) -> None:
        slot = plot.width() / len(self._bars)
        zero = scale(0.0, low, high, plot.bottom(), plot.top())
        for index, (label, value) in enumerate(self._bars):
            left = plot.left() + index * slot + slot * 0.15
            top = scale(value, low, high, plot.bottom(), plot.top())
            bar = QRectF(left, min(top, zero), slot * 0.7, abs(zero - top))
            painter.fillRect(bar, self._accent())
            painter.setPen(self._text_colour())
            under = QRectF(plot.left() + index * slot, plot.bottom(), slot, self.height())
            painter.drawText(
                under, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, label
            )
            over = QRectF(plot.left() + index * slot, MARGIN, slot, max(0.0, bar.top() - MARGIN))
            painter.drawText(
                over,
                Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom,
                format_value(value, self._unit),
            )
