"""The dialog's engine set-up: one button that creates the engine's Python environment (see
core.engine_setup) in a background task, with progress, the log, and one line saying why when
it fails. When it succeeds the engine becomes the plugin's engine (this profile, every profile
and qgis_process) and ``engine_ready`` is emitted."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.core import QgsApplication
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from .. import settings
from ..core.engine_setup import (
    TORCH_REQUIREMENT,
    SetupOptions,
    default_target,
    default_torch_options,
    detect_accelerator,
    engine_source,
)
from ..resources import PLUGIN_DIR
from ..setup_task import EngineSetupTask

LOG_LINES = 5000


class EngineSetupPanel(QWidget):
    """Folder, PyTorch build and pip options for a set-up; Set up / Cancel; progress and log."""

    engine_ready = pyqtSignal(str)
    """The new engine's environment folder, once it answers ``misr models --json``."""

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.task: Optional[EngineSetupTask] = None
        self.accelerator, self.accelerator_note = detect_accelerator()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        intro = QLabel(f"Creates the engine's own Python environment ({TORCH_REQUIREMENT}, the "
                       "engine shipped with the plugin, ONNX Runtime): about 1 GB to download "
                       "for the CPU, several GB with CUDA. QGIS stays usable meanwhile.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.folder_widget = QgsFileWidget()
        self.folder_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.folder_widget.setFilePath(str(default_target()))
        form.addRow("Folder", self.folder_widget)
        self.build_combo = QComboBox()
        self.build_combo.addItem("CPU", "cpu")
        self.build_combo.addItem("CUDA (NVIDIA GPU)", "cuda")
        self.build_combo.setCurrentIndex(self.build_combo.findData(self.accelerator))
        self.build_combo.setToolTip(f"Detected: {self.accelerator_note}")
        form.addRow("PyTorch build", self.build_combo)
        self.pip_options = QLineEdit(" ".join(default_torch_options(self.accelerator)))
        self.pip_options.setPlaceholderText("none: pip's own configuration")
        self.pip_options.setToolTip("Extra pip options for PyTorch only (the CPU build comes from "
                                    "PyTorch's CPU index on Linux and Windows)")
        self.build_combo.currentIndexChanged.connect(self._build_changed)
        form.addRow("pip options for PyTorch", self.pip_options)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.setup_button = QPushButton("Set up the engine")
        self.setup_button.setAutoDefault(False)
        self.setup_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel set-up")
        self.cancel_button.setAutoDefault(False)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setVisible(False)
        for button in (self.setup_button, self.cancel_button):
            button.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
            row.addWidget(button)
        row.addWidget(self.progress_bar, 1)
        row.addStretch(0)
        layout.addLayout(row)
        self.status_label = QLabel()
        self.status_label.setVisible(False)
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status_label)
        self.log_box = QgsCollapsibleGroupBox("Set-up log")
        self.log_box.setSaveCollapsedState(False)
        log_layout = QVBoxLayout(self.log_box)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(LOG_LINES)
        self.log_view.setMinimumHeight(120)
        log_layout.addWidget(self.log_view)
        self.log_box.setCollapsed(True)
        layout.addWidget(self.log_box)

    def _status(self, text: str) -> None:
        self.status_label.setText(text)
        self.status_label.setVisible(bool(text))

    def _build_changed(self, *_args) -> None:
        self.pip_options.setText(" ".join(default_torch_options(self.build_combo.currentData())))

    def options(self) -> SetupOptions:
        """The set-up as chosen in the panel."""
        return SetupOptions(
            target=Path(self.folder_widget.filePath().strip() or str(default_target())).expanduser(),
            python="", engine_source=engine_source(PLUGIN_DIR) or "",  # the task finds Python
            accelerator=self.build_combo.currentData(),
            torch_pip_options=tuple(self.pip_options.text().split()))

    def start(self, _checked: bool = False, options: Optional[SetupOptions] = None) -> EngineSetupTask:
        """Start the set-up in the background (returns its task)."""
        options = options or self.options()
        self.log_view.clear()
        self._status("Setting up the engine...")
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(True)
        self._set_running(True)
        task = EngineSetupTask(options, self._finished)
        task.line.connect(self.log_view.appendPlainText)
        task.progressChanged.connect(self._progress)
        self.task = task
        QgsApplication.taskManager().addTask(task)
        return task

    def cancel(self) -> None:
        if self.task is not None:
            self._status("Stopping the set-up...")
            self.task.cancel()

    def _set_running(self, running: bool) -> None:
        self.setup_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for widget in (self.folder_widget, self.build_combo, self.pip_options):
            widget.setEnabled(not running)

    def _progress(self, value: float) -> None:
        self.progress_bar.setValue(int(value))
        if self.task is not None and self.task.step:
            self._status(f"{self.task.step}...")

    def _finished(self, task: EngineSetupTask) -> None:
        if task is not self.task:
            return
        self.task = None
        self._set_running(False)
        self.progress_bar.setVisible(False)
        result = task.result
        if result is not None and result.ok:
            problem = settings.set_configured_engine(result.engine)
            text = f"The engine is ready in {result.engine}."
            self._status(text + (f" ({problem}: other profiles will not find it)" if problem else ""))
            self.engine_ready.emit(result.engine)
        elif result is not None and result.canceled:
            self._status("Set-up canceled.")
        else:
            reason = result.reason if result is not None else "the set-up did not run"
            self._status(f"Set-up failed: {reason}")
            self.log_box.setCollapsed(False)
        if result is not None and result.log_path:
            self.status_label.setToolTip(f"Full log: {result.log_path}")

