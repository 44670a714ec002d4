"""The frozen prefix run once per image (and view): the :class:`~sktransfer.extraction.extractor.Extractor`,
the engines that run it, batch decoding, BatchNorm folding, and the activation cache.
"""
