"""Measuring bundles where they run: `edge profile` on this host or an Android device over adb, the native runner."""
