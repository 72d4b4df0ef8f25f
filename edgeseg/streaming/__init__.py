"""The stream pieces: after segmentation, one stream's zones -> guards -> alarm -> events -> sinks
(:class:`edgeseg.streaming.unit.StreamUnit`), and the staged detection loop that ``edgeseg detect``
runs. Shared by ``detect`` and the gateway so an event is the same whichever produced it."""
