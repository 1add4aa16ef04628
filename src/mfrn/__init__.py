"""mfrn: generalizable deepfake detection with Reconstructed-Blended Images (RBI) and the
Multi-scale Feature Reconstruction Network (MFRN)."""

__version__ = "0.1.0"
