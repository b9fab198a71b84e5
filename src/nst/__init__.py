"""Neural style transfer after Gatys, Ecker and Bethge, as a PyTorch Lightning experiment."""

__version__ = "0.1.0"


def stylize(*args, **kwargs):
    """See nst.api.stylize (imported lazily: torch and Lightning take seconds to import)."""
    from .api import stylize as _stylize
    return _stylize(*args, **kwargs)
