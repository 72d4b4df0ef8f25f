"""A real RTSP server for the gateway tests: Debian's GStreamer RTSP server serving an H.264 file.

    /usr/bin/python3 tests/rtsp_server.py VIDEO.mp4 PORT [MOUNT] [shared]

Runs with the *system* Python (python3-gi, gir1.2-gst-rtsp-server-1.0); prints ``ready`` once it
listens. Each client gets its own pipeline from the start of the file; with ``shared`` every
client sees the one pipeline, live, as with a real camera.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    video, port = sys.argv[1], sys.argv[2]
    mount = sys.argv[3] if len(sys.argv) > 3 else "/cam"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( filesrc location={video} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(len(sys.argv) > 4 and sys.argv[4] == "shared")
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
