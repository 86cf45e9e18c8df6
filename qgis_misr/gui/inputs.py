"""The dialog's widgets for what analysts bring: the kind of each mask layer (detected, changeable),
the band choice (one band, all of them, or a list) and the cloud-mask options (automatic
screening when there are no masks, growing the masks, snow and dark areas)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

from qgis.core import QgsRasterLayer
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLineEdit, QSpinBox, QWidget

from ..core.masks import AUTO, KINDS, LABELS, UNUSABLE

ALL_BANDS, BAND_LIST = "all", "list"
AUTO_MASK_LABEL = "Screen clouds and shadows automatically when there are no masks"
TOOLTIP = Qt.ItemDataRole.ToolTipRole


def mask_kind_combo(current: str, detected: Optional[Tuple[str, Sequence[str]]], enabled: bool) -> QComboBox:
    """A combo box of the mask kinds for one mask layer: ``Auto`` (the engine detects the kind; the
    kind its values show is named) or a kind chosen; `current` is selected."""
    combo = QComboBox()
    if detected is not None:
        kind, others = detected
        combo.addItem(f"Auto: {LABELS[kind]}", AUTO)
        tip = f"Detected from the mask's values: {LABELS[kind]} ({UNUSABLE[kind]})."
        if others:
            tip += f" Its values also fit {', '.join(LABELS[k] for k in others)}: choose the kind if it is one of those."
        combo.setItemData(0, tip, TOOLTIP)
    else:
        combo.addItem("Auto", AUTO)
    for index, kind in enumerate(KINDS, start=1):
        combo.addItem(LABELS[kind], kind)
        combo.setItemData(index, UNUSABLE[kind], TOOLTIP)
    combo.setCurrentIndex(max(0, combo.findData(current)))
    combo.setToolTip(combo.itemData(combo.currentIndex(), TOOLTIP) or "The engine detects the kind of the mask")
    combo.setEnabled(enabled)
    return combo


class BandChooser(QWidget):
    """One band of the frames, all of them, or a list ("4,3,2"), as (band, bands)."""

    changed = pyqtSignal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.combo = QComboBox()
        self.combo.setToolTip("The band(s) of the frames to super-resolve. Several bands share one "
                              "registration; three are shown in colour (true colour when they are red, "
                              "green and blue). Masks: band 1.")
        self.list_edit = QLineEdit()
        self.list_edit.setPlaceholderText("bands, e.g. 4,3,2")
        self.list_edit.setVisible(False)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.list_edit, 1)
        self.count = 0
        self.combo.currentIndexChanged.connect(self._chosen)
        self.list_edit.textChanged.connect(lambda *_: self.changed.emit())

    def fill(self, layer: Optional[QgsRasterLayer]) -> None:
        """Offer the bands of `layer` (the first frame), keeping the choice when it still applies."""
        current = self.combo.currentData()
        self.combo.blockSignals(True)
        self.combo.clear()
        count = layer.bandCount() if layer is not None else 0
        for band in range(1, count + 1):
            self.combo.addItem(layer.bandName(band) or f"Band {band}", band)
        if count > 1:
            self.combo.addItem(f"All {count} bands", ALL_BANDS)
            self.combo.addItem("Bands...", BAND_LIST)
        index = self.combo.findData(current if current is not None else 1)
        self.combo.setCurrentIndex(index if index >= 0 else 0)
        self.combo.blockSignals(False)
        self.list_edit.setVisible(self.combo.currentData() == BAND_LIST)
        self.count = count

    def choose(self, choice: Union[int, str, Sequence[int]]) -> None:
        """Select a band number, ``all`` or a list of band numbers."""
        if isinstance(choice, (list, tuple)):
            self.list_edit.setText(",".join(map(str, choice)))
            choice = BAND_LIST
        self.combo.setCurrentIndex(max(0, self.combo.findData(choice)))

    def selection(self) -> Tuple[int, Tuple[int, ...]]:
        """(band, bands): bands is () for a single band; unreadable list entries are 0 (refused
        by validation)."""
        data = self.combo.currentData()
        if data == ALL_BANDS:
            return 1, tuple(range(1, self.count + 1))
        if data == BAND_LIST:
            numbers = tuple(_number(part) for part in self.list_edit.text().split(",") if part.strip())
            return (numbers[0], ()) if len(numbers) == 1 else (1, numbers or (0,))
        return int(data or 1), ()

    def _chosen(self, *_args) -> None:
        self.list_edit.setVisible(self.combo.currentData() == BAND_LIST)
        self.changed.emit()


def _number(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return 0


class MaskOptions(QWidget):
    """Automatic cloud screening (on by default), how far masks grow, snow and SCL dark areas."""

    changed = pyqtSignal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.auto_check = QCheckBox("Screen automatically without masks")
        self.auto_check.setChecked(True)
        self.auto_check.setToolTip(f"{AUTO_MASK_LABEL}: the engine marks pixels much brighter (cloud) or "
                                   "darker (shadow) than the other dates as not clear.")
        self.dilation = QSpinBox()
        self.dilation.setRange(-1, 50)
        self.dilation.setValue(-1)
        self.dilation.setSpecialValueText("grow: default")
        self.dilation.setPrefix("grow ")
        self.dilation.setSuffix(" px")
        self.dilation.setToolTip("Grow the unusable areas of the masks by this many pixels (default: 0 for "
                                 "given masks, 2 for the automatic screening, whose clouds grow only through "
                                 "pixels that depart from the other dates: their edges, the shadows beside them)")
        self.snow = QCheckBox("snow")
        self.snow.setToolTip("Count snow and ice as unusable (SCL 11, QA_PIXEL bit 5, Fmask 3)")
        self.dark = QCheckBox("dark areas")
        self.dark.setToolTip("Count Sentinel-2 SCL class 2 (dark area / cast shadow) as unusable")
        for widget in (self.auto_check, self.dilation, self.snow, self.dark):
            layout.addWidget(widget)
        layout.addStretch(1)
        for signal in (self.auto_check.toggled, self.dilation.valueChanged, self.snow.toggled, self.dark.toggled):
            signal.connect(lambda *_: self.changed.emit())

    def values(self) -> dict:
        """The RunParameters fields these widgets set."""
        dilation = self.dilation.value()
        return {"auto_mask": self.auto_check.isChecked(), "mask_dilation": None if dilation < 0 else dilation,
                "mask_snow": self.snow.isChecked(), "mask_dark_areas": self.dark.isChecked()}
