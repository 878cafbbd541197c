"""Pictures of what a network learned: saliency (CAM, Grad-CAM), motion maps and flow on the colour
wheel, report charts, the self-contained HTML report, and a headless browser to check it."""
from __future__ import annotations

from vidssl._lazy import lazy_exports

# Public name -> submodule, imported on first use (matplotlib, OpenCV and torch stay unloaded until then).
_EXPORTS = {
    "SaliencyMaps": "saliency",
    "LinearOnStage": "saliency",
    "cam": "saliency",
    "class_activation_maps": "saliency",
    "grad_cam": "saliency",
    "upsample_to_clip": "saliency",
    "normalise_maps": "saliency",
    "temporal_pool": "saliency",
    "overlay": "pictures",
    "motion_overlay": "pictures",
    "flow_to_rgb": "pictures",
    "color_wheel": "pictures",
    "strip": "pictures",
    "png_bytes": "pictures",
    "gif_bytes": "pictures",
    "render_report_html": "html",
    "HeadlessChromium": "browser",
    "find_chromium": "browser",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
