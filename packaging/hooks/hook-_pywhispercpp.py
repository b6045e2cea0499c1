# pywhispercpp: the extension module _pywhispercpp links whisper.cpp and its ggml from
# pywhispercpp.libs/ (auditwheel-renamed copies, found through its RUNPATH $ORIGIN/pywhispercpp.libs).
# PyInstaller's dependency analysis follows those DT_NEEDED entries, so nothing is listed here
# explicitly; the wheel's other copies (site-packages/libwhisper.so*, the pwcpp GUI/recording
# helpers and their sounddevice/webrtcvad imports) are not collected.
hiddenimports = []
