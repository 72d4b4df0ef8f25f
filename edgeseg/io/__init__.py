"""Frames in and evidence out: sources (images, folders, video files, cameras with reconnects),
event sinks (JSONL, webhook, MQTT, video, snapshots) and alarm evidence (clips, retention).
Imports :mod:`edgeseg.core` and :mod:`edgeseg.runtime`."""
