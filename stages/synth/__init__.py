"""Synthetic heads: a procedural, drivable head model and the data made from it.

Two axes, as in real multi-view head data: an identity (`sample_identity`: skull and face proportions, nose,
lips, eyes, ears, skin tone, brows, hair, beard, neck) and an ARKit-52 expression (`sample_expression`, or any
code). `render_head` turns (identity, expression, cameras) into anti-aliased RGBA + depth on CPU or GPU with the
same code; `make_synthetic_capture`, `write_dataset` and `sample_training_example` build captures, datasets
(SPEC section 7) and on-the-fly training examples from it.
"""

from stages.synth.capture import DEFAULT_SYNTHETIC_RES, make_synthetic_capture, prepare_synthetic
from stages.synth.dataset import write_dataset
from stages.synth.expression import performance, sample_expression, short_sequences
from stages.synth.head import LABELS
from stages.synth.identity import HeadIdentity, sample_identity
from stages.synth.keypoints import KEYPOINT_NAMES
from stages.synth.render import head_cloud, head_keypoints, render_head
from stages.synth.sampler import sample_training_example
from stages.synth.studio import HEAD_EXTENT, capture_cameras, farthest_views, studio_cameras

__all__ = ["DEFAULT_SYNTHETIC_RES", "HEAD_EXTENT", "KEYPOINT_NAMES", "LABELS", "HeadIdentity", "capture_cameras",
           "farthest_views", "head_cloud", "head_keypoints", "make_synthetic_capture", "performance",
           "prepare_synthetic", "render_head", "sample_expression", "sample_identity", "sample_training_example",
           "short_sequences", "studio_cameras", "write_dataset"]
