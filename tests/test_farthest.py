"""The shared farthest-point loop behind the studio, clip and photo-set view choices."""

import numpy as np
import torch

from stages.capture.face_source import farthest_on_pose
from stages.datasets.video import farthest_rotations
from stages.farthest import farthest_point_order
from stages.synth.studio import farthest_views


def test_farthest_points_on_a_line_alternate_ends():
    x = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    assert farthest_point_order(5, 3, 0, lambda i: np.abs(x - x[i])) == [0, 4, 3]
    assert farthest_point_order(5, 9, 2, lambda i: np.abs(x - x[i])) == [2, 4, 0, 1, 3]  # all, once; ties: lowest index


def test_duplicates_give_distinct_points_in_index_order():
    """A clip that never turns (all rotations equal) still gives k different frames, the earliest first."""
    same = np.repeat(np.eye(3)[None], 6, axis=0)
    assert farthest_rotations(same, 4, first=0) == [0, 1, 2, 3]
    assert farthest_rotations(same, 4, first=3) == [0, 1, 2, 3]
    assert farthest_on_pose(np.zeros((5, 2)), 3) == [0, 1, 2]
    dirs = torch.tensor([[0.0, 0.0, 1.0]] * 5)
    views = farthest_views(dirs, 3, torch.Generator().manual_seed(0))
    assert len(set(views)) == 3


def test_studio_views_take_the_camera_farthest_from_the_first():
    dirs = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0.9, 0.1, 0]]), dim=1)
    angle = (dirs @ dirs.T).clamp(-1, 1).acos()
    for seed in range(6):
        first, second = farthest_views(dirs, 2, torch.Generator().manual_seed(seed))
        assert angle[first, second] == angle[first].max()
