"""Face detectors behind one protocol (fflm.detect.base)."""
