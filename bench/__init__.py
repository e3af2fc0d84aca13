"""tlbench: how much cheaper is transfer learning than full training of FaceNet on this CPU?"""

__version__ = "0.1.0"
