"""What the user gives, turned into images: arrays, paths, PIL images, a pandas column
(``images``), CSV tables of paths and targets (``tables``), the fixed augmented views
of an image (``views``) and the demo's data set (``demo_data``).
"""
