"""Kvasir-SEG polyp segmentation: an image folder and a mask folder with the same file names.

::

    images/1.png   masks/1.png          (the common prepared copy)
    Original/1.jpg  Ground Truth/1.jpg   (the original release)

Every image shows a polyp (anomalous); masks with lossy JPEG noise are thresholded at 127.
"""

from entroad.data.formats.paired import polyp_format

FORMAT = polyp_format("kvasir", "Kvasir-SEG")
