"""One reset for what this process remembers between fits."""


def clear_caches():
    """Forget everything this process keeps between fits.

    Activations held in memory, the built backbones (one per weights file),
    the compiled frozen prefixes and their fingerprints, and the digests of
    image files read so far.  Activations on disk (``cache_dir``) stay; the
    ``sktransfer cache clear`` command removes those.  Useful to measure a
    cold fit, or to give memory back in a long-lived process.
    """
    from .backbones.building import forget_templates
    from .extraction.cache import forget
    from .extraction.extractor import forget_runners
    from .inputs.images import forget_digests

    forget()
    forget_runners()
    forget_templates()
    forget_digests()
