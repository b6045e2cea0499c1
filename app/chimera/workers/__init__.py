"""Supervised worker processes: the mechanism shared by speech-to-text and image generation."""
