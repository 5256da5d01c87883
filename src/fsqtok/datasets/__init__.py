"""What fsqtok ships or renders, each built on the data pipeline (:mod:`fsqtok.data`).

* :mod:`~fsqtok.datasets.samples`: built-in real sample media (images, RGB-D, speech, videos).
* :mod:`~fsqtok.datasets.fashion_mnist`: the one Fashion-MNIST reader.
* :mod:`~fsqtok.datasets.rgbd`: scale-ambiguous ray-cast RGB-D scenes.
* :mod:`~fsqtok.datasets.panoptic`: panoptic scenes of Fashion-MNIST garments.
* :mod:`~fsqtok.datasets.real_depth`: real depth frames (motorcycle, castel).
* :mod:`~fsqtok.datasets.uvim_pairs`: UViM's (image, target) pairs for each task.
"""
