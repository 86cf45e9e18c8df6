"""The super-resolution dialog. It only collects a RunParameters (see core.params), shows what
validation says about it, and hands it to the RunController; the work happens elsewhere."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from qgis.core import QgsProject, QgsRasterLayer
from qgis.gui import QgsCollapsibleGroupBox, QgsExtentWidget, QgsFileWidget, QgsScrollArea
from qgis.PyQt.QtCore import QObject, QRect, Qt, QTimer, pyqtSignal
from qgis.PyQt.QtGui import QGuiApplication, QIcon, QResizeEvent, QShowEvent
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .. import settings
from ..controller import RunController
from ..core.command import SENSOR_MTF_OPTION, TTF_OPTION
from ..core.engine import EngineCapabilities, EngineLocation, ModelInfo, UnknownModel, cached_capabilities
from ..core.naming import looks_like_mask, match_masks, run_name
from ..core.params import (
    ALIGN_LABEL,
    AREA_TOOLTIP,
    DEFAULT_TTF_STEPS,
    KEEP_NOISY_LABEL,
    KEEP_NOISY_TOOLTIP,
    SENSOR_MTF_FORMAT,
    SENSOR_MTF_TOOLTIP,
    TTF_TOOLTIP,
    FrameInput,
    RunParameters,
    parse_sensor_mtf,
)
from ..core.run import RunError
from ..core.masks import detect_kinds
from ..core.validation import FINE_TUNABLE, preselect, run_notes, ttf_frames_problem, validate_parameters
from ..layers import is_result_layer, layer_date, layer_file, raster_info
from ..resources import icon_path
from ..task import MisrTask
from .engine_setup import EngineSetupPanel
from .inputs import BandChooser, MaskOptions, mask_kind_combo

NO_MASK = "none / use nodata"
TEMPORARY = "[Save to temporary file]"
CHECKING = "checking the engine..."
OTHER_WEIGHTS = "Other file..."
MAX_WEIGHTS_FILES = 8
ALIGN_TOOLTIP = ("Frames (and masks) whose CRS, pixel size, extent or size differ from the first "
                 "frame's are resampled onto its grid by the engine, in memory (the files are not "
                 "changed): frames bilinear, masks nearest neighbour. Pixels outside a frame's "
                 "footprint count as not clear. Unticked, such frames are refused.")
MEAN_STATE = "Mean of the dates"
STATE_TOOLTIP = ("Where the surface changed between the dates (a harvest, a flood, a new building): the mean of "
                 "the dates (default), or the state one ticked frame shows; where that frame is cloudy, the mean. "
                 "The detail every frame adds stays.")
_COL_FRAME, _COL_DATE, _COL_MASK, _COL_KIND = 0, 1, 2, 3
PREFERRED_SIZE = (860, 820)
SCREEN_MARGIN = (60, 70)
"""Room left on the screen for the window's frame and the desktop's panels."""
TABLE_MIN_HEIGHT = 150
MESSAGES_MAX_HEIGHT = 110
"""About six lines of problems and notes; more scroll inside their box."""


def no_default_buttons(widget: QWidget) -> None:
    """No push button in `widget` is a default button: Enter in a field must not move frames,
    start a run or close the dialog."""
    for button in widget.findChildren(QPushButton):
        button.setAutoDefault(False)
        button.setDefault(False)


def _section(title: str, name: str) -> QgsCollapsibleGroupBox:
    """A collapsible section of the dialog (its state is not remembered between sessions)."""
    box = QgsCollapsibleGroupBox(title)
    box.setObjectName(name)
    box.setSaveCollapsedState(False)
    return box


@dataclass
class FrameRow:
    """One row of the frames table: a frame layer, whether it is used, and its mask layer."""

    layer_id: str
    checked: bool = True
    mask_id: Optional[str] = None
    mask_kind: str = "auto"


class _ProbeRelay(QObject):
    """Carries an engine probe's answer from its worker thread to the dialog (GUI thread)."""

    probed = pyqtSignal(object, object)


class MisrDialog(QDialog):
    """Choose frames, masks and options; Run starts a background task."""

    def __init__(self, controller: RunController, project: Optional[QgsProject] = None,
                 parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.controller = controller
        self.project = project or QgsProject.instance()
        self.rows: List[FrameRow] = []
        self.engine: Optional[EngineLocation] = None
        self.caps: Optional[EngineCapabilities] = None
        self.task = None
        self.problems: List[str] = []
        self.notes: List[str] = []
        self._probing = False
        self._weights_restored = False  # the saved weights choice, applied once a model is known
        self._area_layer: Optional[str] = None  # the first frame the area widget's CRS follows
        self._relay = _ProbeRelay()
        self._relay.probed.connect(self._apply_probe)
        self._dates: Dict[str, object] = {}
        self._build()
        self.controller.listeners.append(self._task_finished)
        self.project.layersAdded.connect(self.refresh_layers)
        self.project.layersRemoved.connect(self.refresh_layers)
        self.refresh_layers()
        self.refresh_engine()

    # -- construction ---------------------------------------------------------------------------
    def _build(self) -> None:
        """Sections in a scroll area (Frames, Options, Outputs, Engine: other modules add their
        rows to ``frames_layout``, ``options_form`` and ``engine_form``); below it, always
        visible, the problems and notes, the status and the buttons."""
        self.setWindowTitle("MISR super-resolution (x3)")
        self.setWindowIcon(QIcon(icon_path("misr.svg")))
        layout = QVBoxLayout(self)
        self.scroll = QgsScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        content = QWidget()
        self.sections = QVBoxLayout(content)
        self.sections.setContentsMargins(0, 0, 0, 0)
        self.sections.addWidget(self._build_frames_section(), 1)
        self.sections.addWidget(self._build_options_section())
        self.sections.addWidget(self._build_outputs_section())
        self.sections.addWidget(self._build_engine_section())
        self.scroll.setWidget(content)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self._build_messages())
        status_row = QHBoxLayout()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(False)
        status_row.addWidget(self.status_label, 1)
        status_row.addWidget(self.progress_bar, 1)
        layout.addLayout(status_row)
        self._clock_timer = QTimer(self)  # a run's status line: the time moves between the engine's events
        self._clock_timer.setInterval(1000)
        self._clock_timer.timeout.connect(self._show_run_time)
        layout.addWidget(self._build_buttons())

        self.model_combo.currentIndexChanged.connect(lambda *_: self._apply_weights())
        self.model_combo.currentIndexChanged.connect(lambda *_: self.validate())
        self.weights_combo.currentIndexChanged.connect(lambda *_: self.validate())
        self.kernels_widget.fileChanged.connect(lambda *_: self.validate())
        for signal in (self.band_chooser.changed, self.mask_options.changed, self.ttf_check.toggled,
                       self.device_combo.currentIndexChanged, self.tile_spin.valueChanged,
                       self.ttf_steps.valueChanged, self.align_check.toggled, self.mtf_edit.textChanged,
                       self.state_combo.currentIndexChanged, self.keep_noisy_check.toggled,
                       self.area_widget.extentChanged):
            signal.connect(lambda *_: self.validate())
        for widget in (self.output_widget, self.uncertainty_widget):
            widget.fileChanged.connect(lambda *_: self.validate())
        self._restore_options()
        no_default_buttons(self)
        self.fit_to_screen()

    def _build_frames_section(self) -> QGroupBox:
        box = self.frames_section = QGroupBox("Frames (one scene, one grid) and their cloud masks")
        self.frames_layout = QVBoxLayout(box)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Frame", "Date", "Mask", "Mask kind"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(_COL_FRAME, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(_COL_DATE, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(_COL_MASK, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(_COL_KIND, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setToolTip("Tick the frames to fuse. The others must be on the first frame's "
                              "grid (or be resampled onto it). Layers that are local files on the "
                              "first frame's grid are ticked when they are added.")
        self.table.itemChanged.connect(self._item_changed)
        self.table.setMinimumHeight(TABLE_MIN_HEIGHT)
        self.frames_layout.addWidget(self.table, 1)
        buttons = QHBoxLayout()
        self.up_button = QPushButton("Move up")
        self.down_button = QPushButton("Move down")
        self.sort_button = QPushButton("Sort by date")
        self.match_button = QPushButton("Match masks by name")
        self.reload_button = QPushButton("Reload layers")
        self.up_button.clicked.connect(lambda: self.move_selected(-1))
        self.down_button.clicked.connect(lambda: self.move_selected(1))
        self.sort_button.clicked.connect(self.sort_by_date)
        self.match_button.clicked.connect(lambda: self.match_masks(overwrite=True))
        self.reload_button.clicked.connect(self.refresh_layers)
        self.match_button.setToolTip("Pair each frame with the mask layer of the same name "
                                     "(frame_03 <-> mask_03, same date, same number)")
        for button in (self.up_button, self.down_button, self.sort_button, self.match_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.reload_button)
        self.frames_layout.addLayout(buttons)
        return box

    def _build_options_section(self) -> QgsCollapsibleGroupBox:
        box = self.options_section = _section("Options", "misrOptionsSection")
        self.options_form = QFormLayout(box)
        self.band_chooser = BandChooser()
        self.options_form.addRow("Bands", self.band_chooser)
        self.area_widget = QgsExtentWidget()  # the standard choices: map canvas, a layer, drawn, typed
        self.area_widget.setNullValueAllowed(True, "Whole frames")
        self.area_widget.clear()
        self.area_widget.setToolTip(AREA_TOOLTIP)
        iface = getattr(self.controller, "iface", None)
        if iface is not None and iface.mapCanvas() is not None:
            self.area_widget.setMapCanvas(iface.mapCanvas())
        self.options_form.addRow("Area", self.area_widget)
        self.mask_options = MaskOptions()
        self.options_form.addRow("Cloud masks", self.mask_options)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("The models the engine offers ('misr models')")
        self.options_form.addRow("Model", self.model_combo)
        self.weights_combo = QComboBox()
        self.weights_combo.setToolTip("The model's weights: those the engine ships (supervised, "
                                      "self-supervised) or a file, e.g. written by 'misr adapt'")
        self.weights_combo.activated.connect(self._weights_chosen)
        self.options_form.addRow("Weights", self.weights_combo)
        ttf_row = QHBoxLayout()
        self.ttf_check = QCheckBox("Test-time fine-tuning")
        self.ttf_steps = QSpinBox()
        self.ttf_steps.setRange(1, 10000)
        self.ttf_steps.setValue(DEFAULT_TTF_STEPS)
        self.ttf_steps.setSuffix(" steps")
        self.ttf_note = QLabel()
        self.ttf_note.setStyleSheet("color: palette(mid);")
        ttf_row.addWidget(self.ttf_check)
        ttf_row.addWidget(self.ttf_steps)
        ttf_row.addWidget(self.ttf_note, 1)
        self.options_form.addRow("Fine-tuning", ttf_row)
        self.mtf_edit = QLineEdit()  # not kept between sessions: a stated MTF belongs to one sensor
        self.mtf_edit.setClearButtonEnabled(True)
        self._set_mtf_limits(None)
        self.options_form.addRow("Sensor MTF", self.mtf_edit)
        self.state_combo = QComboBox()
        self.state_combo.setToolTip(STATE_TOOLTIP)
        self.options_form.addRow("Surface shown", self.state_combo)
        self.keep_noisy_check = QCheckBox(KEEP_NOISY_LABEL)  # not kept between sessions: it belongs to one scene
        self.keep_noisy_check.setToolTip(KEEP_NOISY_TOOLTIP)
        self.options_form.addRow("Noisy frames", self.keep_noisy_check)
        device_row = QHBoxLayout()
        self.device_combo = QComboBox()
        self.device_refresh = QToolButton()
        self.device_refresh.setText("Refresh")
        self.device_refresh.setToolTip("Ask the engine again which devices it sees")
        self.device_refresh.clicked.connect(lambda: self.refresh_engine(force=True))
        device_row.addWidget(self.device_combo, 1)
        device_row.addWidget(self.device_refresh)
        self.options_form.addRow("Device", device_row)
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(0, 8192)
        self.tile_spin.setSingleStep(32)
        self.tile_spin.setSpecialValueText("engine default")
        self.tile_spin.setSuffix(" px")
        self._set_tile_tooltip(None)
        self.options_form.addRow("Tile size", self.tile_spin)
        self.align_check = QCheckBox(ALIGN_LABEL)
        self.align_check.setToolTip(ALIGN_TOOLTIP)
        self.options_form.addRow("Grids", self.align_check)
        return box

    def _build_outputs_section(self) -> QgsCollapsibleGroupBox:
        box = self.outputs_section = _section("Outputs (GeoTIFF, pixel size / 3)", "misrOutputsSection")
        self.outputs_form = QFormLayout(box)
        self.output_widget = self._save_widget()
        self.uncertainty_widget = self._save_widget()
        self.outputs_form.addRow("Super-resolved", self.output_widget)
        self.outputs_form.addRow("Uncertainty", self.uncertainty_widget)
        self.kernels_widget = QgsFileWidget()
        self.kernels_widget.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        self.kernels_widget.setFilter("JSON (*.json)")
        self.kernels_widget.setConfirmOverwrite(True)
        self.kernels_widget.lineEdit().setPlaceholderText("[not written]")
        self.kernels_widget.setToolTip("With test-time fine-tuning: the blur kernel it estimated for "
                                       "every frame, with its width and ellipticity (JSON)")
        self.outputs_form.addRow("Blur kernels", self.kernels_widget)
        return box

    def _build_engine_section(self) -> QgsCollapsibleGroupBox:
        self.engine_section = _section("Engine", "misrEngineSection")
        self.engine_form = QFormLayout(self.engine_section)
        self.engine_widget = QgsFileWidget()
        self.engine_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.engine_widget.setFilePath(settings.configured_engine())
        self.engine_widget.lineEdit().setPlaceholderText(
            "auto-detect (MISR_ENGINE, the engine set up for every profile, the repository's .venv, PATH)")
        self.engine_widget.setToolTip("The engine's Python environment (a folder such as "
                                      "qgis-misr/.venv), its python, or the misr executable")
        self._engine_timer = QTimer(self)  # typing a path: ask the engine once the user pauses
        self._engine_timer.setSingleShot(True)
        self._engine_timer.setInterval(700)
        self._engine_timer.timeout.connect(self.refresh_engine)
        self.engine_widget.fileChanged.connect(lambda _path: self._engine_timer.start())
        self.engine_form.addRow("Python environment", self.engine_widget)
        self.engine_label = QLabel()
        self.engine_label.setWordWrap(True)
        self.engine_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.engine_form.addRow(self.engine_label)
        self.setup_box = _section("Set up the engine here (no terminal needed)", "misrEngineSetup")
        setup_layout = QVBoxLayout(self.setup_box)
        self.setup_panel = EngineSetupPanel()
        self.setup_panel.engine_ready.connect(self._engine_set_up)
        setup_layout.addWidget(self.setup_panel)
        self.setup_box.setCollapsed(True)
        self.engine_form.addRow(self.setup_box)
        found = settings.current_engine(self.engine_widget.filePath().strip()) is not None
        self.engine_section.setCollapsed(found)  # opened again when the engine has a problem
        return self.engine_section

    def _build_messages(self) -> QScrollArea:
        """Problems (red) and notes (amber) in a box of bounded height that scrolls: a long
        list never pushes or covers the controls."""
        self.messages = QScrollArea()
        self.messages.setWidgetResizable(True)
        self.messages.setFrameShape(QFrame.Shape.NoFrame)
        self.messages.setMaximumHeight(MESSAGES_MAX_HEIGHT)
        inner = QWidget()
        column = QVBoxLayout(inner)
        column.setContentsMargins(0, 0, 0, 0)
        self.problems_label = QLabel()
        self.problems_label.setWordWrap(True)
        self.problems_label.setStyleSheet("color: #b00020;")
        self.problems_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notes_label = QLabel()
        self.notes_label.setWordWrap(True)
        self.notes_label.setStyleSheet("color: #8a5a00;")
        self.notes_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notes_label.setVisible(False)
        column.addWidget(self.problems_label)
        column.addWidget(self.notes_label)
        column.addStretch(1)
        self.messages.setWidget(inner)
        self.messages.setVisible(False)
        return self.messages

    def _build_buttons(self) -> QDialogButtonBox:
        self.button_box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.run_button = self.button_box.addButton("Run", QDialogButtonBox.ButtonRole.ActionRole)
        self.cancel_button = self.button_box.addButton("Cancel run", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button = self.button_box.addButton("Export as COG...", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button.setToolTip("Write the results of the last finished run as Cloud-Optimized GeoTIFFs")
        self.cancel_button.setEnabled(False)
        self.export_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel_run)
        self.export_button.clicked.connect(self._export_clicked)
        self.button_box.rejected.connect(self.reject)
        return self.button_box

    def fit_to_screen(self, available: Optional[QRect] = None) -> None:
        """Open at a comfortable size that fits the screen (1366x768 included): the sections
        scroll when there is not room for all of them."""
        if available is None:
            screen = QGuiApplication.primaryScreen()
            parent = self.parentWidget()
            if parent is not None and parent.window().windowHandle() is not None:
                screen = parent.window().windowHandle().screen() or screen
            available = screen.availableGeometry() if screen is not None else QRect(0, 0, 1366, 728)
        width = min(PREFERRED_SIZE[0], available.width() - SCREEN_MARGIN[0])
        height = min(PREFERRED_SIZE[1], available.height() - SCREEN_MARGIN[1])
        self.resize(max(width, 480), max(height, 400))

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt's name)
        no_default_buttons(self)  # also buttons other modules added; before QDialog picks one
        super().showEvent(event)

    def _save_widget(self) -> QgsFileWidget:
        widget = QgsFileWidget()
        widget.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        widget.setFilter("GeoTIFF (*.tif *.tiff)")
        widget.setConfirmOverwrite(True)
        widget.lineEdit().setPlaceholderText(TEMPORARY)
        return widget

    def _restore_options(self) -> None:
        self.tile_spin.setValue(settings.value("tile_size", 0, int))
        self.ttf_steps.setValue(settings.value("ttf_steps", DEFAULT_TTF_STEPS, int))
        self.align_check.setChecked(settings.value("align", False, bool))
        self._set_devices(None)
        self._apply_models(None)
        self.validate()

    def _save_options(self, params: RunParameters) -> None:
        settings.set_value("model", params.model)
        settings.set_value("tile_size", params.tile_size)
        settings.set_value("ttf_steps", params.ttf_steps)
        settings.set_value("device", params.device)
        settings.set_value("align", params.align)
        settings.set_value("weights", params.weights)
        settings.set_configured_engine(self.engine_widget.filePath().strip())

    # -- layers ---------------------------------------------------------------------------------
    def _raster_layers(self) -> List[QgsRasterLayer]:
        return [layer for layer in self.project.mapLayers().values()
                if isinstance(layer, QgsRasterLayer) and layer.isValid() and not is_result_layer(layer)]

    def _layer(self, layer_id: Optional[str]) -> Optional[QgsRasterLayer]:
        layer = self.project.mapLayer(layer_id) if layer_id else None
        return layer if isinstance(layer, QgsRasterLayer) else None

    def refresh_layers(self, *_args) -> None:
        """Rebuild the frame rows from the project's raster layers, keeping choices made."""
        layers = self._raster_layers()
        known = {row.layer_id: row for row in self.rows}
        frames = [layer for layer in layers if not looks_like_mask(layer.name())]
        frames.sort(key=lambda layer: layer.name().lower())
        rows = [known[row.layer_id] for row in self.rows
                if row.layer_id in {layer.id() for layer in frames}]
        new = [layer for layer in frames if layer.id() not in known]
        for layer, ticked in zip(new, self._preselect(new, rows)):
            rows.append(FrameRow(layer.id(), checked=ticked))
        ids = {layer.id() for layer in layers}
        for row in rows:
            if row.mask_id not in ids:
                row.mask_id = None
        self.rows = rows
        self._dates = {layer.id(): layer_date(layer) for layer in layers}
        self.match_masks(overwrite=False)

    def _preselect(self, layers: List[QgsRasterLayer], rows: List[FrameRow]) -> List[bool]:
        """Which new frame layers to tick: local files on the first ticked frame's grid (see
        core.validation.preselect)."""
        first = next((self._layer(row.layer_id) for row in rows if row.checked), None)
        reference = raster_info(first) if first is not None else None
        infos = [raster_info(layer) if layer_file(layer) else None for layer in layers]
        local = [info for info in infos if info is not None]
        ticks = iter(preselect(local, reference))
        return [next(ticks) if info is not None else False for info in infos]

    def mask_candidates(self) -> List[QgsRasterLayer]:
        """Mask-like layers first, then the other layers not used as frames."""
        used = {row.layer_id for row in self.rows if row.checked}
        layers = [layer for layer in self._raster_layers() if layer.id() not in used]
        return sorted(layers, key=lambda layer: (not looks_like_mask(layer.name()), layer.name().lower()))

    def match_masks(self, overwrite: bool = True) -> None:
        """Pair frames with mask layers by name (keeps manual choices unless `overwrite`)."""
        candidates = [layer for layer in self.mask_candidates() if looks_like_mask(layer.name())]
        by_name = {layer.name(): layer.id() for layer in candidates}
        frame_names = [self._layer(row.layer_id).name() for row in self.rows]
        for row, mask_name in zip(self.rows, match_masks(frame_names, list(by_name))):
            if overwrite or row.mask_id is None:
                row.mask_id = by_name.get(mask_name) if mask_name else (None if overwrite else row.mask_id)
        self._fill_table()

    def _fill_table(self) -> None:
        self.table.blockSignals(True)
        selected = self.selected_row()
        for index in range(self.table.rowCount()):
            # Qt deletes replaced cell widgets later: hide them now so none lingers on screen
            for column in (_COL_MASK, _COL_KIND):
                old = self.table.cellWidget(index, column)
                if old is not None:
                    old.hide()
                    self.table.removeCellWidget(index, column)
        self.table.setRowCount(len(self.rows))
        candidates = self.mask_candidates()
        detected = self._detected_kinds()
        for index, row in enumerate(self.rows):
            layer = self._layer(row.layer_id)
            item = QTableWidgetItem(layer.name())
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                          | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if row.checked else Qt.CheckState.Unchecked)
            item.setData(Qt.ItemDataRole.UserRole, row.layer_id)
            item.setToolTip(layer.source())
            self.table.setItem(index, _COL_FRAME, item)
            date = self._dates.get(row.layer_id)
            date_item = QTableWidgetItem(date.isoformat() if date else "")
            date_item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            self.table.setItem(index, _COL_DATE, date_item)
            combo = QComboBox()
            combo.addItem(NO_MASK, None)
            for candidate in candidates:
                if candidate.id() != row.layer_id:
                    combo.addItem(candidate.name(), candidate.id())
            combo.setCurrentIndex(max(0, combo.findData(row.mask_id)) if row.mask_id else 0)
            combo.setEnabled(row.checked)
            combo.currentIndexChanged.connect(lambda _i, r=row, c=combo: self._mask_changed(r, c))
            self.table.setCellWidget(index, _COL_MASK, combo)
            kind = mask_kind_combo(row.mask_kind, detected.get(row.layer_id), row.checked and row.mask_id is not None)
            kind.currentIndexChanged.connect(lambda _i, r=row, c=kind: self._kind_changed(r, c))
            self.table.setCellWidget(index, _COL_KIND, kind)
        if selected is not None and selected < len(self.rows):
            self.table.selectRow(selected)
        self.table.blockSignals(False)
        self._fill_bands()
        self._fill_states()
        self.validate()

    def _mask_changed(self, row: FrameRow, combo: QComboBox) -> None:
        row.mask_id, row.mask_kind = combo.currentData(), "auto"
        self._fill_table()  # the kinds shown depend on every mask chosen

    def _kind_changed(self, row: FrameRow, combo: QComboBox) -> None:
        row.mask_kind = combo.currentData()
        combo.setToolTip(combo.itemData(combo.currentIndex(), Qt.ItemDataRole.ToolTipRole) or "")
        self.validate()

    def _detected_kinds(self) -> Dict[str, tuple]:
        """(kind, other fitting kinds) of the mask of every ticked row with one, detected as a set
        as the engine does (``core.masks``), by frame layer id."""
        rows = [row for row in self.rows if row.checked and self._layer(row.mask_id) is not None]
        paths = [layer_file(self._layer(row.mask_id)) for row in rows]
        return {row.layer_id: answer for row, answer in zip(rows, detect_kinds(paths))}

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != _COL_FRAME:
            return
        row = self.rows[item.row()]
        row.checked = item.checkState() == Qt.CheckState.Checked
        self._fill_table()

    def selected_row(self) -> Optional[int]:
        indexes = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return indexes[0].row() if indexes else None

    def move_selected(self, step: int) -> None:
        index = self.selected_row()
        if index is None or not 0 <= index + step < len(self.rows):
            return
        self.rows[index], self.rows[index + step] = self.rows[index + step], self.rows[index]
        self._fill_table()
        self.table.selectRow(index + step)

    def sort_by_date(self) -> None:
        """Order the frames by acquisition date (undated ones last, by name)."""
        def key(row: FrameRow) -> Tuple[bool, str, str]:
            date = self._dates.get(row.layer_id)
            return (date is None, date.isoformat() if date else "", self._layer(row.layer_id).name())
        self.rows.sort(key=key)
        self._fill_table()

    def set_frames(self, layers: List[QgsRasterLayer], masks: Optional[List[Optional[QgsRasterLayer]]] = None) -> None:
        """Use exactly `layers`, in this order, with these masks (None = match by name)."""
        self.refresh_layers()
        wanted = [layer.id() for layer in layers]
        rows = {row.layer_id: row for row in self.rows}
        chosen = []
        for layer_id in wanted:
            row = rows.pop(layer_id, None) or FrameRow(layer_id)
            row.checked = True
            chosen.append(row)
        for row in rows.values():
            row.checked = False
        self.rows = chosen + list(rows.values())
        if masks is None:
            self.match_masks(overwrite=True)
        else:
            for row, mask in zip(chosen, masks):
                row.mask_id = mask.id() if mask is not None else None
            self._fill_table()

    def _fill_states(self) -> None:
        """The dates the SR can show: the mean of them all, or one ticked frame's (kept when it
        stays ticked)."""
        chosen = self.state_combo.currentData()
        self.state_combo.blockSignals(True)
        self.state_combo.clear()
        self.state_combo.addItem(MEAN_STATE, "")
        for row in self.rows:
            layer = self._layer(row.layer_id)
            if row.checked and layer is not None:
                date = self._dates.get(row.layer_id)
                self.state_combo.addItem(f"{layer.name()} ({date.isoformat()})" if date else layer.name(), row.layer_id)
        self.state_combo.setCurrentIndex(max(0, self.state_combo.findData(chosen)) if chosen else 0)
        self.state_combo.blockSignals(False)

    def _fill_bands(self) -> None:
        self.band_chooser.fill(next((self._layer(row.layer_id) for row in self.rows if row.checked), None))

    # -- engine ---------------------------------------------------------------------------------
    def refresh_engine(self, force: bool = False) -> None:
        """Find the engine and ask it (in a thread) for its models, devices and options."""
        self.engine = settings.current_engine(self.engine_widget.filePath().strip())
        cached = None if force else cached_capabilities(self.engine)
        if cached is not None:
            self._apply_probe(self.engine, cached)
            return
        self.caps = None
        self._probing = True
        self.engine_label.setText(f"{self.engine.label}: {CHECKING}" if self.engine
                                  else "MISR engine not found.")
        if self.engine is None:
            self.engine_section.setCollapsed(False)
            self.setup_box.setCollapsed(False)
        self._set_devices(None)
        self._apply_models(None)
        self.validate()
        location, relay = self.engine, self._relay

        def probe() -> None:
            caps = settings.probe(location, refresh=force)
            try:
                relay.probed.emit(location, caps)
            except RuntimeError:  # the dialog was deleted meanwhile
                pass

        threading.Thread(target=probe, name="misr-probe", daemon=True).start()

    def wait_for_engine(self, timeout_s: float = 120.0) -> bool:
        """Process events until the engine probe has answered (for scripts and tests)."""
        import time
        from qgis.PyQt.QtCore import QCoreApplication
        end = time.monotonic() + timeout_s
        while self._probing and time.monotonic() < end:
            QCoreApplication.processEvents()
            time.sleep(0.02)
        return not self._probing

    def _apply_probe(self, location: Optional[EngineLocation], caps: EngineCapabilities) -> None:
        if location != self.engine:
            return  # an answer about an engine no longer chosen
        self._probing = False
        self.caps = caps
        if caps.ok:
            gpus = ", ".join(d.get("name", d.get("id", "")) for d in caps.gpus) or "none (CPU only)"
            version = caps.version or "misr"
            self.engine_label.setText(f"{version}, torch {caps.torch} ({location.source}). "
                                      f"GPU: {gpus}.")
            self.engine_label.setToolTip(" ".join(location.argv))
        else:
            self.engine_label.setText(f"Engine problem: {caps.error}")
            self.engine_section.setCollapsed(False)
        self._set_devices(caps if caps.ok else None)
        self._apply_models(caps if caps.ok else None)
        self._set_tile_tooltip(caps if caps.ok else None)
        self._set_mtf_limits(caps if caps.ok else None)
        if caps.ok and caps.limits.default_ttf_steps and settings.value("ttf_steps", None) is None:
            self.ttf_steps.setValue(caps.limits.default_ttf_steps)  # the engine's measured default
        self.validate()

    def _engine_set_up(self, path: str) -> None:
        """The set-up made an engine: use it (the setting is already saved)."""
        self.engine_widget.setFilePath(path)
        self._engine_timer.stop()
        self.refresh_engine(force=True)

    def _set_devices(self, caps: Optional[EngineCapabilities]) -> None:
        current = self.device_combo.currentData() or settings.value("device", "auto", str)
        self.device_combo.blockSignals(True)
        self.device_combo.clear()
        self.device_combo.addItem("Auto (a GPU if the engine sees one, else CPU)", "auto")
        self.device_combo.addItem("CPU", "cpu")
        model = self.device_combo.model()
        if caps is None:
            self.device_combo.addItem(f"GPU ({CHECKING})" if self._probing else "GPU (unknown)", "cuda")
            model.item(2).setEnabled(False)
        elif not caps.gpus:
            self.device_combo.addItem("GPU (none seen by the engine)", "cuda")
            model.item(2).setEnabled(False)
            self.device_combo.setItemData(
                2, f"torch {caps.torch} in the engine reports no CUDA device",
                Qt.ItemDataRole.ToolTipRole)
        else:
            for device in caps.gpus:
                memory = device.get("memory_mb")
                extra = f", {memory / 1024:.0f} GB" if memory else ""
                self.device_combo.addItem(f"GPU: {device.get('name', '?')} ({device['id']}{extra})",
                                          device["id"])
        index = self.device_combo.findData(current)
        if index < 0 or not model.item(index).isEnabled():
            index = 0
        self.device_combo.setCurrentIndex(index)
        self.device_combo.blockSignals(False)

    def _apply_models(self, caps: Optional[EngineCapabilities]) -> None:
        """Offer the engine's models, with its labels (nothing until it has answered)."""
        current = self.model_combo.currentData() or settings.value("model", "", str)
        models = caps.models if caps is not None else []
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for index, info in enumerate(models):
            self.model_combo.addItem(info.label, info.name)
            self.model_combo.setItemData(index, _model_tooltip(info), Qt.ItemDataRole.ToolTipRole)
        if not models:
            self.model_combo.addItem(CHECKING if self._probing else "none: see Engine below", None)
            self.model_combo.model().item(0).setEnabled(False)
        index = self.model_combo.findData(current)
        if index < 0:
            index = next((i for i, info in enumerate(models) if info.default), 0)
        self.model_combo.setCurrentIndex(index)
        self.model_combo.blockSignals(False)
        self._apply_weights()

    def _apply_weights(self) -> None:
        """Offer the chosen model's shipped weights (the default first), the weights files
        chosen before, and 'Other file...'; keep the current choice when it is still offered."""
        model = self.current_model()
        current = self.weights_combo.currentData()
        if current is None or (current == "" and not self._weights_restored):
            current = settings.value("weights", "", str) or ""
        self._weights_restored = self._weights_restored or model is not None
        self.weights_combo.blockSignals(True)
        self.weights_combo.clear()
        options = model.weights_options if model is not None else ()
        for index, choice in enumerate(options):
            self.weights_combo.addItem(choice.label, "" if index == 0 else choice.path)
            tip = choice.path + (f"\nModel card: {choice.card}" if choice.card else "")
            self.weights_combo.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
        if not options:
            self.weights_combo.addItem("the model's default", "")
        for path in self._weights_files():
            if self.weights_combo.findData(path) < 0:
                self.weights_combo.addItem(os.path.basename(path), path)
                self.weights_combo.setItemData(self.weights_combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        self.weights_combo.addItem(OTHER_WEIGHTS, OTHER_WEIGHTS)
        index = self.weights_combo.findData(current)
        self.weights_combo.setCurrentIndex(max(index, 0))
        self.weights_combo.blockSignals(False)

    @staticmethod
    def _weights_files() -> List[str]:
        """Weights files the user chose before (most recent first) that still exist."""
        files = [p for p in (settings.value("weights_files", "", str) or "").split("|") if p]
        return [p for p in files if os.path.isfile(p)]

    def add_weights_file(self, path: str) -> None:
        """Offer `path` (e.g. weights from 'misr adapt') in the list, and choose it."""
        path = os.path.abspath(path)
        files = [path] + [p for p in self._weights_files() if p != path]
        settings.set_value("weights_files", "|".join(files[:MAX_WEIGHTS_FILES]))
        self._apply_weights()
        self.weights_combo.setCurrentIndex(max(self.weights_combo.findData(path), 0))

    def _weights_chosen(self, index: int) -> None:
        """'Other file...': ask for a weights file."""
        if self.weights_combo.itemData(index) != OTHER_WEIGHTS:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Weights for the model", "", "Weights (*.safetensors)")
        if path:
            self.add_weights_file(path)
        else:
            self.weights_combo.setCurrentIndex(0)

    def _set_tile_tooltip(self, caps: Optional[EngineCapabilities]) -> None:
        limits = caps.limits if caps is not None else None
        minimum = f"at least {limits.min_tile_size} px; " if limits and limits.min_tile_size else ""
        default = f" ({limits.default_tile_size} px)" if limits and limits.default_tile_size else ""
        self.tile_spin.setToolTip(f"Low-resolution tile size: smaller uses less memory ({minimum}"
                                  f"0 = the engine's default{default})")

    def _set_mtf_limits(self, caps: Optional[EngineCapabilities]) -> None:
        """The sensor MTF's default and range from the engine; off for an engine without the option."""
        limits = caps.limits if caps is not None else None
        default = f" ({limits.engine_mtf:.2f})" if limits and limits.engine_mtf else ""
        self.mtf_edit.setPlaceholderText(f"engine default{default}; or one value, or one per band (0.28, 0.26)")
        bounds = limits.sensor_mtf_range if limits else None
        within = f" Between {bounds[0]:g} and {bounds[1]:g}." if bounds else ""
        missing = caps is not None and bool(caps.options) and not caps.supports(SENSOR_MTF_OPTION)
        self.mtf_edit.setEnabled(not missing)
        if missing:
            self.mtf_edit.clear()
        self.mtf_edit.setToolTip(f"This engine's 'misr super-resolve --help' has no {SENSOR_MTF_OPTION} option"
                                 if missing else f"{SENSOR_MTF_TOOLTIP} Give {SENSOR_MTF_FORMAT}.{within}")

    def current_model(self) -> Optional[ModelInfo]:
        """The chosen model as the engine described it (None before it has answered)."""
        if self.caps is None or not self.caps.ok or self.model_combo.currentData() is None:
            return None
        try:
            return self.caps.model(self.model_combo.currentData())
        except UnknownModel:
            return None

    def _checked_count(self) -> int:
        return sum(1 for row in self.rows if row.checked and self._layer(row.layer_id) is not None)

    def ttf_available(self) -> bool:
        return self._ttf_unavailable_reason() is None

    def _ttf_unavailable_reason(self) -> Optional[str]:
        """Why fine-tuning cannot be chosen now (None when it can)."""
        model = self.current_model()
        if self._probing:
            return CHECKING
        if model is None:
            return "Needs an engine that answers, and a model"
        if not model.can(FINE_TUNABLE):
            return f"{model.label} is not fine-tunable"
        if not self.caps.supports(TTF_OPTION):
            return f"This engine's 'misr super-resolve --help' has no {TTF_OPTION} option"
        return ttf_frames_problem(self._checked_count(), self.caps)

    def _update_ttf(self) -> None:
        """Fine-tuning enabled only when the model, the engine and the number of frames allow
        it; otherwise unticked, with the reason beside it."""
        reason = self._ttf_unavailable_reason()
        self.ttf_check.blockSignals(True)
        self.ttf_check.setEnabled(reason is None)
        if reason is not None:
            self.ttf_check.setChecked(False)
        self.ttf_check.blockSignals(False)
        tip = reason or TTF_TOOLTIP
        self.ttf_check.setToolTip(tip)
        self.ttf_steps.setToolTip(tip)
        self.ttf_steps.setEnabled(reason is None and self.ttf_check.isChecked())
        self.kernels_widget.setEnabled(reason is None and self.ttf_check.isChecked())
        self.ttf_note.setText(reason if reason and reason != CHECKING else "")

    # -- parameters and validation ------------------------------------------------------------------
    def collect_parameters(self) -> RunParameters:
        """The dialog's state as one RunParameters (output paths '' = temporary)."""
        frames = []
        names, dates = [], []
        for row in self.rows:
            layer = self._layer(row.layer_id)
            if not row.checked or layer is None:
                continue
            mask = self._layer(row.mask_id)
            frames.append(FrameInput(raster_info(layer), raster_info(mask) if mask else None,
                                     row.mask_kind if mask else "auto"))
            names.append(layer.name())
            dates.append(self._dates.get(row.layer_id))
        model = self.current_model()
        band, bands = self.band_chooser.selection()
        return RunParameters(
            frames=frames, band=band, bands=bands, **self.mask_options.values(),
            model=model.name if model else "", weights=self._chosen_weights(),
            ttf_enabled=self.ttf_check.isChecked() and self.ttf_available(),
            kernels_out=self.kernels_widget.filePath().strip(),
            ttf_steps=self.ttf_steps.value(), device=self.device_combo.currentData() or "auto",
            tile_size=self.tile_spin.value(), output=self.output_widget.filePath().strip(),
            uncertainty=self.uncertainty_widget.filePath().strip(), write_uncertainty=True,
            overwrite=True, run_name=run_name(model.label if model else "", names, dates),
            align=self.align_check.isChecked(),
            sensor_mtf=self._read_mtf()[0], reference_frame=self._state_file(),
            keep_noisy_frames=self.keep_noisy_check.isChecked(), extent=self._area(frames))

    def _area(self, frames: List[FrameInput]) -> Optional[Tuple[float, float, float, float]]:
        """The area chosen, in the first frame's CRS (None: the whole frames)."""
        if not frames or not self.area_widget.isValid():
            return None
        area = self.area_widget.outputExtent()
        if area.isNull() or area.isEmpty():
            return None
        return area.xMinimum(), area.yMinimum(), area.xMaximum(), area.yMaximum()

    def _area_follows_first_frame(self) -> None:
        """Give the area widget the first ticked frame's CRS and extent when that frame changes,
        so that "Whole frames" and typed values mean it."""
        first = self._layer(next((row.layer_id for row in self.rows if row.checked), None))
        if first is None or first.id() == self._area_layer:
            return
        self._area_layer, chosen = first.id(), self.area_widget.isValid()
        self.area_widget.setOutputCrs(first.crs())
        self.area_widget.setOriginalExtent(first.extent(), first.crs())
        if not chosen:  # setting the CRS shows a zero extent: keep "Whole frames"
            self.area_widget.clear()

    def _state_file(self) -> str:
        """The file of the frame whose date the SR shows ('' = the mean of the dates)."""
        layer = self._layer(self.state_combo.currentData() or None)
        return (raster_info(layer).path or "") if layer is not None else ""

    def _read_mtf(self) -> Tuple[Tuple[float, ...], Optional[str]]:
        """The sensor MTF values typed (`parse_sensor_mtf`) and the text's problem: () and its
        one-line message while it is not numbers, else the values and None."""
        try:
            return parse_sensor_mtf(self.mtf_edit.text()), None
        except ValueError as exc:
            return (), str(exc)

    def _chosen_weights(self) -> str:
        data = self.weights_combo.currentData()
        return "" if data in (None, OTHER_WEIGHTS) else str(data)

    def validate(self) -> List[str]:
        """Show the problems of the current choice; Run is enabled only without problems.

        Frames the engine will resample (``--align``) are shown as notes, which do not block."""
        if not hasattr(self, "run_button"):
            return []
        self._update_ttf()
        self._area_follows_first_frame()
        params = self.collect_parameters()
        problems = validate_parameters(params, self.caps)
        mtf_problem = self._read_mtf()[1]
        if mtf_problem:
            problems.append(mtf_problem)
        if self.engine is None:
            problems.append("MISR engine not found: set it up in the Engine section below, or "
                            "choose its Python environment there.")
        elif self.caps is not None and not self.caps.ok:
            problems.append(f"Engine problem: {self.caps.error}")
        self._show_messages(problems, run_notes(params, self.caps))
        running = self.task is not None
        self.run_button.setEnabled(not problems and not running and not self._probing)
        self.run_button.setToolTip("Fix the problems listed above first" if problems else "")
        return problems

    def _show_messages(self, problems: List[str], notes: List[str]) -> None:
        """Problems, then informational notes (one frame, frames to be resampled), in their
        scrolling box under the sections."""
        self.problems, self.notes = problems, notes
        self.problems_label.setText("\n".join(f"\u2022 {p}" for p in problems))
        self.problems_label.setVisible(bool(problems))
        self.notes_label.setText("\n".join(f"\u2022 {note}" for note in notes))
        self.notes_label.setVisible(bool(notes))
        self.messages.setVisible(bool(problems or notes))
        self._fit_messages()

    def _fit_messages(self) -> None:
        """The messages box as high as its lines, at most MESSAGES_MAX_HEIGHT (then it scrolls)."""
        inner = self.messages.widget()
        width = max(200, self.messages.viewport().width() if self.messages.isVisible() else self.width() - 40)
        needed = inner.layout().totalHeightForWidth(width) if inner.layout().hasHeightForWidth() \
            else inner.sizeHint().height()
        self.messages.setFixedHeight(max(1, min(MESSAGES_MAX_HEIGHT, needed + 2)))

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        if self.messages.isVisible():
            self._fit_messages()

    # -- running --------------------------------------------------------------------------------
    def run(self) -> Optional[MisrTask]:
        """Start the run (returns the task, or None when it could not start)."""
        if self.validate() or self.task is not None:
            return None
        params = self.collect_parameters()
        reference = self._layer(next(row.layer_id for row in self.rows if row.checked))
        self._save_options(params)
        try:
            task = self.controller.start(params, self.engine, self.caps, reference=reference)
        except RunError as exc:
            self._show_messages([str(exc)], self.notes)
            return None
        self.task = task
        self.export_button.setEnabled(False)  # until this run has finished
        task.progressChanged.connect(self._progress)
        self.status_label.setText(f"Running {params.run_name}...")
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(True)
        self.cancel_button.setEnabled(True)
        self._clock_timer.start()
        self.validate()
        return task

    def _progress(self, value: float) -> None:
        self.progress_bar.setValue(int(value))
        if self.task is not None and self.task.message:
            self.status_label.setText(self.task.message)

    def _show_run_time(self) -> None:
        """The engine's last message with the time elapsed and left, as of now (the steps before
        the network hold the bar: QgsTask signals no unchanged progress)."""
        if self.task is not None and self.task.clock is not None:
            self.status_label.setText(self.task.clock.text())

    def cancel_run(self) -> None:
        if self.task is not None:
            self._clock_timer.stop()
            self.status_label.setText("Stopping the engine...")
            self.task.cancel()

    def _task_finished(self, task: MisrTask) -> None:
        if task is not self.task:
            return
        self.task = None
        self._clock_timer.stop()
        self.cancel_button.setEnabled(False)
        self.progress_bar.setVisible(False)
        outcome = task.outcome
        shown = "layers" in task.context  # the results are on the map, ready to export
        if outcome is not None and outcome.ok and shown:
            self.status_label.setText(f"Done: {task.context['layers'][0].name()}")
        elif outcome is not None and outcome.canceled:
            self.status_label.setText("Canceled: the engine was stopped; no files were left behind.")
        else:
            self.status_label.setText(f"Failed: {task.error or 'the results cannot be shown'}")
        self.export_button.setEnabled(outcome is not None and outcome.ok and shown)
        self.validate()

    def _export_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the results as Cloud-Optimized GeoTIFFs",
                                                  settings.export_folder(self.project))
        if folder:
            self.export_to(folder)

    def export_to(self, folder: str) -> Dict[str, str]:
        results = self.controller.last_results
        try:
            return self.controller.export(results["sr"], results.get("uncertainty"), folder,
                                          results.get("run", "misr"))
        except Exception as exc:
            self.status_label.setText(f"Export failed: {exc}")
            raise

    def disconnect_project(self) -> None:
        for signal in (self.project.layersAdded, self.project.layersRemoved):
            try:
                signal.disconnect(self.refresh_layers)
            except (TypeError, RuntimeError):
                pass
        if self._task_finished in self.controller.listeners:
            self.controller.listeners.remove(self._task_finished)


def _model_tooltip(info: ModelInfo) -> str:
    """A model's name, capabilities and model card, as the engine lists them."""
    lines = [f"Engine model '{info.name}'"]
    if info.capabilities:
        lines.append("Capabilities: " + ", ".join(sorted(info.capabilities)))
    if info.card:
        lines.append(f"Model card: {info.card}")
    return "\n".join(lines)
