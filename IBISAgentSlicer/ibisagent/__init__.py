"""IBISAgent engine: segmentation as a sequence of agent decisions (think -> click -> segment).

Heavy backends (torch, transformers, SAM) are imported only by the policy or tool that needs
them; importing this package costs numpy, scipy and Pillow.
"""

__version__ = "0.1.0"
