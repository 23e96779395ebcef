"""napari-behaviorvlm: few-shot multi-camera keypoints and behavior segments for mice.

The core (``core``, ``video``, ``geometry``, ``pose``, ``vlm``, ``behavior``, ``io``, ``synth``)
never imports Qt or napari; ``napari_behaviorvlm.napari`` is the thin napari layer.
"""

__version__ = "0.1.0"
