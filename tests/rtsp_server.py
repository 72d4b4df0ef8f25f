"""A real RTSP server for the gateway tests: Debian's GStreamer RTSP server serving an H.264 file.

    /usr/bin/python3 tests/rtsp_server.py VIDEO.mp4 PORT [MOUNT] [shared]
    /usr/bin/python3 tests/rtsp_server.py live PORT [MOUNT]

Runs with the *system* Python (python3-gi, gir1.2-gst-rtsp-server-1.0); prints ``ready`` once it
listens. Each client gets its own pipeline from the start of the file; with ``shared`` every
client sees the one pipeline, live, as with a real camera.

``live``: a live camera (one shared pipeline, 10 fps, 160x120 H.264: a white ball moving over a
gray scene) that obeys lines on stdin, each answered ``ok``: ``stall`` (the connection stays up,
RTCP keeps flowing, no video packet is sent), ``freeze`` (video keeps flowing, time stamps advance,
but every picture is the same one: a solid gray, as a decoder repeating its last picture after a
resolution change), ``resume`` (the moving ball again). A client that reconnects to a stalled
camera gets a rebuilt pipeline that sends its first ``REPLAY`` pictures (new ones) and then stalls
again, as GStreamer's RTSP server does: a few pictures are no recovery.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LIVE = ("( videotestsrc name=src is-live=true pattern=ball background-color=0xff808080 foreground-color=0xffffffff "
        "! video/x-raw,width=160,height=120,framerate=10/1,format=I420 "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bframes=0 "
        "! h264parse ! valve name=valve drop=false ! rtph264pay name=pay0 pt=96 config-interval=1 )")
REPLAY = 3  # pictures a stalled camera's rebuilt pipeline sends on a reconnect before it stalls again


def main() -> None:
    video, port = sys.argv[1], sys.argv[2]
    mount = sys.argv[3] if len(sys.argv) > 3 else "/cam"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    live = video == "live"
    if live:
        factory.set_launch(LIVE)
    else:
        factory.set_launch(f"( filesrc location={video} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(live or (len(sys.argv) > 4 and sys.argv[4] == "shared"))
    media, state = [], ["resume"]

    def apply(bin_, line):
        src, valve = bin_.get_by_name("src"), bin_.get_by_name("valve")
        if line == "stall":
            valve.set_property("drop", True)
        elif line == "freeze":
            src.set_property("pattern", "solid-color")
            src.set_property("foreground-color", 0xff808080)
        elif line == "resume":
            valve.set_property("drop", False)
            src.set_property("pattern", "ball")
            src.set_property("foreground-color", 0xffffffff)

    def replay_then_stall(bin_, pictures=REPLAY):
        valve, sent = bin_.get_by_name("valve"), [0]

        def probe(_pad, _info):
            sent[0] += 1
            if sent[0] < pictures:
                return Gst.PadProbeReturn.OK
            valve.set_property("drop", True)
            return Gst.PadProbeReturn.REMOVE

        valve.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, probe)

    def configure(_factory, m):
        # the last client gone, the shared pipeline is torn down and the next one built anew: it
        # starts in the camera's current state (a stalled camera stays stalled across reconnects,
        # after the few pictures a rebuilt pipeline sends first)
        media.append(m.get_element())
        if live:
            apply(media[-1], state[0])
            if state[0] == "stall":
                media[-1].get_by_name("valve").set_property("drop", False)
                replay_then_stall(media[-1])

    factory.connect("media-configure", configure)

    def command(source, _cond):
        line = source.readline().strip()
        if not line:  # stdin closed: the test is gone
            GLib.MainLoop().quit()
            return False
        state[0] = line
        for bin_ in media:
            apply(bin_, line)
        print("ok", flush=True)
        return True

    if live:
        GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, command)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
