"""A non-modal message strip above the live view: errors, hints and prompts with one action.

`show(text, level, action_text=None, action=None)`; levels "info", "warning", "error". The
newest message replaces the previous one; the × button hides it.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

_STYLES = {
    "info": "background:#203a55; color:white;",
    "warning": "background:#6b5410; color:white;",
    "error": "background:#7a1f1f; color:white;",
}


class MessageBar(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.action = QPushButton()
        self.action.hide()
        self.close_button = QToolButton()
        self.close_button.setText("×")
        self.close_button.setAutoRaise(True)
        self.close_button.clicked.connect(self.hide)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.action)
        layout.addWidget(self.close_button)
        self._callback: Callable[[], None] | None = None
        self.action.clicked.connect(self._on_action)
        self.level = ""
        self.hide()

    def show_message(self, text: str, level: str = "info", action_text: str | None = None,
                     action: Callable[[], None] | None = None) -> None:
        self.level = level
        self.setStyleSheet(f"QFrame {{{_STYLES.get(level, _STYLES['info'])}}}")
        self.label.setText(text)
        self._callback = action
        self.action.setVisible(bool(action_text and action))
        if action_text:
            self.action.setText(action_text)
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""

    def _on_action(self) -> None:
        callback = self._callback
        self.hide()
        if callback is not None:
            callback()
