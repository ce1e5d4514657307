"""Frame sources: cameras, recordings and the threaded frame queue.

Everything here returns `sensors.frame.Frame` objects and never imports Qt.
"""
