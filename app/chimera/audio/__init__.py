"""Speech-to-text: whisper.cpp in supervised worker processes."""
