"""fflm: precise facial landmarks on photos of any resolution."""
__version__ = "0.1.0"
