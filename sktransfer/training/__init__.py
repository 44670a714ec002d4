"""What trains: the trainable network and its batches (``network``), the two-phase
schedule wired into skorch (``schedule``) and the callbacks (``callbacks``).
"""
