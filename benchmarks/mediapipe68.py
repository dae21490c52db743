"""MediaPipe Face Mesh as a 68-point peer: its 468 points mapped to the 68 of 300-W by a linear map fitted on
`300w/train` (`pip install mediapipe==0.10.14`, which bundles its detector and mesh models).

Each of the 68 points is a fixed weighted sum of the 468 mesh points with weights summing to one, so the map
commutes with any similarity or affine motion of the face: one ridge least-squares fit on the training faces,
each face's residuals divided by its inter-ocular distance (the ridge, 1e-6, chosen on 410 training faces
left out of a fit on the other 1,600). Mesh coordinates are MediaPipe's normalised image
coordinates times the image size, minus half a pixel (0-based pixel centres, like fflm's).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

MESH_POINTS = 468


def mediapipe_available() -> bool:
    return importlib.util.find_spec("mediapipe") is not None


class MediaPipeMesh:
    """Face Mesh in still-image mode (its own face detector on every call), one face: 468×2 points or None."""

    def __init__(self) -> None:
        import mediapipe as mp

        self.version = mp.__version__
        self.mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)

    def points(self, image: np.ndarray) -> np.ndarray | None:
        """The mesh of the most confident face of an RGB uint8 image, in pixels, or None when none is found."""
        result = self.mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        h, w = image.shape[:2]
        lm = result.multi_face_landmarks[0].landmark
        return np.array([[p.x * w - 0.5, p.y * h - 0.5] for p in lm[:MESH_POINTS]], dtype=np.float64)


def fit_map(meshes: np.ndarray, truths: np.ndarray, norm: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Weights W [68, 468], each row summing to one, minimising Σ_faces |W·mesh − truth|² / norm² + ridge·|W|².

    meshes [F, 468, 2], truths [F, 68, 2], norm [F] (inter-ocular distances). The sum-to-one constraint is
    met by writing each row as the mean weight 1/468 plus a part orthogonal to the ones vector."""
    f, m, _ = meshes.shape
    x = meshes / norm[:, None, None]
    y = truths / norm[:, None, None]
    # rows: every face and both coordinates; columns: mesh points
    a = x.transpose(0, 2, 1).reshape(2 * f, m)
    b = y.transpose(0, 2, 1).reshape(2 * f, -1)
    base = np.full(m, 1.0 / m)
    q, _ = np.linalg.qr(np.eye(m) - 1.0 / m)  # an orthonormal basis whose first m-1 columns span {w: Σw = 0}
    basis = q[:, : m - 1]
    ab = a @ basis
    rhs = b - (a @ base)[:, None]
    coef = np.linalg.solve(ab.T @ ab + ridge * f * np.eye(m - 1), ab.T @ rhs)
    return (base[:, None] + basis @ coef).T


def apply_map(weights: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """68×2 points from one 468×2 mesh."""
    return weights @ mesh


def fitted_map(train: Path, tool: MediaPipeMesh, limit: int | None = None) -> tuple[np.ndarray, int]:
    """The map fitted on the annotated faces of `train` that MediaPipe finds, and how many it found."""
    from fflm.imageio import read_image
    from fflm.annotations import read_annotations

    samples = read_annotations(train)[:limit]
    meshes, truths = [], []
    for s in samples:
        mesh = tool.points(read_image(s.image))
        if mesh is not None:
            meshes.append(mesh)
            truths.append(s.points)
    meshes_a, truths_a = np.stack(meshes), np.stack(truths)
    norm = np.linalg.norm(truths_a[:, 36] - truths_a[:, 45], axis=1)
    return fit_map(meshes_a, truths_a, norm), len(meshes)
