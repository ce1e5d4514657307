"""A non-modal message strip above the live view: errors, hints and prompts with one action.

`show_message(text, level, action_text=None, action=None, cause="")`; levels "info", "warning",
"error". The newest message replaces the previous one; the × button hides it. `cause` names what the
message is about ("vcam", "source", "recording", "scene", ...): `clear(cause)` hides the message once
that cause is gone (the webcam started, a source opened), and leaves a newer message about something
else alone. Text wraps; `tooltip` is shown on hover (e.g. a full path the text shortens).
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
        self.cause = ""
        self.hide()

    def show_message(self, text: str, level: str = "info", action_text: str | None = None,
                     action: Callable[[], None] | None = None, cause: str = "", tooltip: str = "") -> None:
        self.level = level
        self.cause = cause
        self.setStyleSheet(f"QFrame {{{_STYLES.get(level, _STYLES['info'])}}}")
        self.label.setText(text)
        self.label.setToolTip(tooltip)
        self._callback = action
        self.action.setVisible(bool(action_text and action))
        if action_text:
            self.action.setText(action_text)
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""

    def clear(self, *causes: str) -> bool:
        """Hide the message when it is about one of `causes` (True if it was hidden now)."""
        if self.isVisible() and self.cause and self.cause in causes:
            self.hide()
            return True
        return False

    def _on_action(self) -> None:
        callback = self._callback
        self.hide()
        if callback is not None:
            callback()
