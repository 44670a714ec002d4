"""Helpers every layer uses: files written all or nothing, the fit's random generators,
progress displays, sizes in bytes.  Nothing here imports the rest of the package.
"""
