"""cmrepro, the reproduction suite for "Promoting Exploration in Memory-Augmented Adam using Critical Momenta"."""

__version__ = "0.1.0"
