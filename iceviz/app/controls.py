"""A job's Pause / Resume and Cancel buttons, drawn by the browser without a page layout.

A Bokeh button re-renders itself when its label or its ``disabled`` flag changes, and that re-render lays
out the whole document again: every figure on the page is measured and repainted. With the lesson's eight
figures that costs the browser 130-170 ms a change (measured in headless Chromium), and a Pause click that
lands meanwhile waits for it. :class:`JobControls` is two plain HTML buttons in one small component whose
changes only rewrite the buttons' text and flags, so a click shows within a frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import panel as pn
import param

BUTTON_CSS = """
.controls { display: flex; gap: 20px; padding: 5px 10px; }
button { width: var(--button-width, 80px); height: 32px; padding: 6px 8px; border: 1px solid transparent;
         border-radius: 6px; font: inherit; font-size: 12.8px; line-height: 1.43; cursor: pointer;
         white-space: nowrap; }
button.pause { background: rgb(248, 249, 250); color: #000; }
button.pause:hover:enabled { background: rgb(226, 230, 234); }
button.cancel { background: rgb(220, 53, 69); color: #fff; }
button.cancel:hover:enabled { background: rgb(187, 45, 59); }
button:disabled { opacity: 0.65; cursor: not-allowed; }
"""


class JobControls(pn.custom.JSComponent):
    """Pause (or Resume) and Cancel for one job; ``on_pause`` / ``on_cancel`` run on the server when clicked.
    ``button_width`` [px] is each button's width."""

    pause_label = param.String(default="Pause", doc="The first button's text: 'Pause', or 'Resume' while paused.")
    pause_disabled = param.Boolean(default=True, doc="Whether Pause / Resume can be clicked (only while it runs).")
    cancel_disabled = param.Boolean(default=False, doc="Whether Cancel can be clicked (not once the job ended).")

    _esm = """
    export function render({ model }) {
      const box = document.createElement("div");
      box.className = "controls";
      const pause = document.createElement("button");
      const cancel = document.createElement("button");
      pause.className = "pause";
      cancel.className = "cancel";
      cancel.textContent = "Cancel";
      const show = () => {
        pause.textContent = model.pause_label;
        pause.disabled = model.pause_disabled;
        cancel.disabled = model.cancel_disabled;
      };
      show();
      model.on(["pause_label", "pause_disabled", "cancel_disabled"], show);
      pause.addEventListener("click", () => model.send_msg("pause"));
      cancel.addEventListener("click", () => model.send_msg("cancel"));
      box.append(pause, cancel);
      return box;
    }
    """
    _stylesheets = [BUTTON_CSS]

    def __init__(self, on_pause: Callable[[], None], on_cancel: Callable[[], None], button_width: int = 80,
                 **params: Any):
        super().__init__(height=42, width=2 * button_width + 40, sizing_mode="fixed",
                         styles={"--button-width": f"{button_width}px"}, **params)
        self._actions = {"pause": on_pause, "cancel": on_cancel}

    def _handle_msg(self, data: Any) -> None:
        """A click in the browser: ``data`` names the button."""
        disabled = {"pause": self.pause_disabled, "cancel": self.cancel_disabled}.get(data, True)
        if not disabled:  # a click sent just before the button was disabled does nothing
            self._actions[data]()
