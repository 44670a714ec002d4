"""What a fitted model shows: Grad-CAM (``explain``), figures (``plots``) and the HTML
report (``report``).
"""
