"""Face tracking: ARKit-52 expression codes (and head poses) from a video or photos of a face, via MediaPipe."""

from stages.track.frames import FrameSource, open_frames
from stages.track.landmarker import FaceResult, Landmarker, detect, landmarker_model_path, open_landmarker
from stages.track.one_euro import one_euro
from stages.track.pose import pose_c2w, pose_cameras
from stages.track.tracker import Track, fill_missing, smoothing_settings, track

__all__ = ["FaceResult", "FrameSource", "Landmarker", "Track", "detect", "fill_missing", "landmarker_model_path",
           "one_euro", "open_frames", "open_landmarker", "pose_c2w", "pose_cameras", "smoothing_settings", "track"]
