"""Reading video: frames (PyAV), compressed-domain signals, optical flow and motion maps."""
from __future__ import annotations

from vidssl._lazy import lazy_exports

# Public name -> submodule. Imported lazily so `import vidssl.video` stays cheap (no cv2 until
# flow is used) and so a worker process that only decodes frames never loads OpenCV.
_EXPORTS = {
    "VideoReader": "reader",
    "VideoReadError": "reader",
    "probe_video": "reader",
    "open_video": "reader",
    "check_videos": "check",
    "collect_video_paths": "check",
    "CheckReport": "check",
    "write_video": "writer",
    "optical_flow": "flow",
    "motion_map": "flow",
    "read_compressed": "compressed",
    "flow_pairs": "flow",
    "motion_boundaries": "flow",
    "st_motion": "flow",
    "s_motion": "flow",
    "t_motion": "flow",
    "CompressedVideo": "compressed",
    "MotionVectorWarning": "compressed",
    "accumulate_motion_vectors": "compressed",
    "resize_vector_map": "compressed",
    "reencode_video": "reencode",
    "SignalCache": "cache",
    "FrameCache": "frame_cache",
    "FrameCacheWarning": "frame_cache",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
