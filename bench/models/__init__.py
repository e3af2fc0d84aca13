"""Model definitions (FaceNet Inception-ResNet-v1 in `facenet.py`)."""

# Repeats of block35 (Inception-ResNet-A), block17 (-B) and block8 (-C). "small" keeps every
# kind of layer at one repeat each: quick to build and trace, for tests and smoke runs. Here,
# not in facenet.py, so that the parent can check a weights file without importing TensorFlow.
VARIANTS: dict[str, tuple[int, int, int]] = {"full": (5, 10, 5), "small": (1, 1, 1)}
