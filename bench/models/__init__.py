"""Model definitions (FaceNet Inception-ResNet-v1 in `facenet.py`)."""
