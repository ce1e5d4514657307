"""The Help menu's texts and the window that shows them: keyboard shortcuts, camera set-up, virtual
webcam set-up and About (versions, licences of the shipped weights).

The texts come from where the facts live, so they cannot drift: the shortcuts from the window's own
actions, the camera set-up from docs/CAMERAS.md, the virtual webcam steps from
`app.virtual_camera.setup_help`, the licences from assets/README.md and assets/MODEL_CARD.md.
`show_help(parent, title, text, markdown)` opens a non-modal, scrollable window and returns it.
"""

from __future__ import annotations

import html
import importlib.metadata
import platform
import re
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
CAMERAS_DOC = REPO_ROOT / "docs" / "CAMERAS.md"
ASSETS_README = REPO_ROOT / "assets" / "README.md"
MODEL_CARD = REPO_ROOT / "assets" / "MODEL_CARD.md"
APP_NAME = "RGB-D Matting"
APP_SUMMARY = "Live background replacement with an RGB-D camera (the DART method)."


def shortcuts_html(actions: list[QAction]) -> str:
    """A table of every action that has a shortcut: key, then what it does."""
    rows = []
    for action in actions:
        key = action.shortcut().toString()
        if key:
            what = action.toolTip() or action.text()
            rows.append(f"<tr><td><b>{html.escape(key)}</b></td><td>{html.escape(what.replace('&', ''))}</td></tr>")
    return ("<h3>Keyboard shortcuts</h3><table cellspacing='6'>" + "".join(rows) + "</table>"
            "<p>Drop an image or video on the window to make it the background; drop a recording folder "
            "or a .bag/.db3 file to open it.</p>")


def camera_setup_markdown() -> str:
    """docs/CAMERAS.md, or where to find it when this copy of the app has no docs folder."""
    if CAMERAS_DOC.is_file():
        return f"*From {CAMERAS_DOC}*\n\n" + CAMERAS_DOC.read_text(encoding="utf-8")
    return ("Camera set-up is described in docs/CAMERAS.md of the project. In short: install libusb "
            "(`sudo apt-get install libusb-1.0-0`) and the udev rules of your camera, plug it into a USB 3 port, "
            "then run `python main.py devices`.")


def vcam_setup_text() -> str:
    from app.virtual_camera import CARD_LABEL, setup_help

    steps = setup_help().replace("No virtual camera device was found. ", "", 1)
    return ("The Virtual webcam button (V) sends the composite to a virtual camera that video-call and "
            f"streaming apps (Zoom, Teams, Meet in Chrome, OBS) list as '{CARD_LABEL}' or 'OBS Virtual "
            "Camera'.\n\n" + steps)


def versions() -> dict[str, str]:
    """Python, Qt, PySide6, onnxruntime, NumPy and OpenCV versions ("not installed" when missing)."""
    from PySide6 import __version__ as pyside_version
    from PySide6.QtCore import qVersion

    found = {"Python": platform.python_version(), "Qt": qVersion(), "PySide6": pyside_version}
    for label, dists in (("onnxruntime", ("onnxruntime", "onnxruntime-gpu")), ("NumPy", ("numpy",)),
                         ("OpenCV", ("opencv-python-headless", "opencv-python", "opencv-contrib-python"))):
        found[label] = "not installed"
        for dist in dists:
            try:
                found[label] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def asset_licences() -> list[tuple[str, str]]:
    """(asset, licence) for the shipped weights and data, read from assets/MODEL_CARD.md and assets/README.md."""
    out = []
    if MODEL_CARD.is_file():
        section = MODEL_CARD.read_text(encoding="utf-8").split("## License", 1)
        if len(section) == 2:
            text = " ".join(section[1].split("\n## ", 1)[0].split())
            out.append(("Network weights (assets/models)", text))
    if ASSETS_README.is_file():
        for line in ASSETS_README.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 3 and cells[0].startswith("`"):
                out.append((f"assets/{cells[0].strip('`')}", cells[-1]))
    return out


def about_html() -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in versions().items())
    licences = "".join(f"<li><b>{html.escape(name)}</b>: {html.escape(_plain(text))}</li>"
                       for name, text in asset_licences())
    return (f"<h2>{APP_NAME}</h2><p>{APP_SUMMARY}</p><p>Method: Li et al., <i>Depth-Enhanced Accurate and "
            "Real-Time Background Matting</i> (arXiv 2402.15820), built on BGMv2 (Lin et al., CVPR 2021).</p>"
            f"<h3>Versions</h3><table cellspacing='4'>{rows}</table>"
            f"<h3>Licences of the shipped weights and data</h3><ul>{licences or '<li>see assets/README.md</li>'}</ul>"
            "<p>Details: assets/README.md and assets/MODEL_CARD.md.</p>")


def _plain(markdown: str) -> str:
    return re.sub(r"[`*]", "", markdown)


def show_help(parent: QWidget, title: str, text: str, markdown: bool = False, rich: bool = False) -> QDialog:
    """A non-modal window with `text` (plain, Markdown or HTML) in a scrollable, selectable view."""
    dialog = QDialog(parent)
    dialog.setWindowTitle(title)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
    browser = QTextBrowser()
    browser.setOpenExternalLinks(True)
    if markdown:
        browser.setMarkdown(text)
    elif rich:
        browser.setHtml(text)
    else:
        browser.setPlainText(text)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.close)
    layout = QVBoxLayout(dialog)
    layout.addWidget(browser)
    layout.addWidget(buttons)
    dialog.resize(720, 520)
    dialog.browser = browser
    dialog.show()
    return dialog
