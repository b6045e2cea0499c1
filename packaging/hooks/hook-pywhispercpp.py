# The pure-Python half of pywhispercpp: only the modules chimera's audio worker imports (the
# package's examples pull in GUI and recording toolkits).
hiddenimports = ["pywhispercpp.constants", "pywhispercpp.utils"]
excludedimports = ["pywhispercpp.examples", "sounddevice", "webrtcvad", "streamlit", "tkinter"]
