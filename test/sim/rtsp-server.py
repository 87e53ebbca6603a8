#!/usr/bin/python3
# A real RTSP camera for tests: GStreamer's gst-rtsp-server serving a live H.264 test source,
# optionally behind digest (or basic) auth, over TCP and/or UDP. Run with /usr/bin/python3 (a
# python3 earlier on PATH may lack the gi module — field-notes).
#
#   rtsp-server.py --port 0 --mount /cam --user u --password p --auth digest --fps 25 --size 320x240
#
# Prints "READY <port>" on stdout once it listens; exits on SIGTERM/SIGINT.

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mount", default="/cam")
    ap.add_argument("--user", default="")
    ap.add_argument("--password", default="")
    ap.add_argument("--auth", choices=["digest", "basic", "both"], default="digest")
    ap.add_argument("--transport", choices=["tcp", "udp", "both"], default="both")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--gop", type=int, default=25)
    ap.add_argument("--bitrate", type=int, default=500, help="kbit/s")
    ap.add_argument("--session-timeout", type=int, default=0, help="seconds (0: the server default, 60)")
    ap.add_argument("--config-interval", type=int, default=-1, help="rtph264pay: -1 SPS/PPS with every IDR, 0 never in-band")
    args = ap.parse_args()

    Gst.init(None)
    w, h = args.size.split("x")
    # avc stream format: x264 keeps SPS/PPS out of band (codec_data → the SDP only), like cameras
    # that never repeat them; byte-stream: x264 repeats them in front of every IDR.
    fmt = ",stream-format=avc" if args.config_interval == 0 else ""
    x264opts = ' option-string="repeat-headers=0"' if args.config_interval == 0 else ""
    launch = (
        f"( videotestsrc is-live=true pattern=smpte ! video/x-raw,width={int(w)},height={int(h)},framerate={args.fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.gop} bitrate={args.bitrate}{x264opts} "
        f"! video/x-h264,profile=baseline{fmt} ! rtph264pay name=pay0 pt=96 config-interval={args.config_interval} )"
    )

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    from gi.repository import GstRtsp  # noqa: E402

    if args.transport == "tcp":
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    elif args.transport == "udp":
        factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP)

    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        if args.auth in ("basic", "both"):
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        if args.auth in ("digest", "both"):
            auth.add_digest(args.user, args.password, token)
        methods = {"digest": GstRtsp.RTSPAuthMethod.DIGEST, "basic": GstRtsp.RTSPAuthMethod.BASIC}
        if args.auth == "both":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST | GstRtsp.RTSPAuthMethod.BASIC)
        else:
            auth.set_supported_methods(methods[args.auth])
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_role_from_structure(
            Gst.Structure.from_string("user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0]
        )
        factory.set_permissions(perms)

    if args.session_timeout > 0:
        # A short session timeout: a client that does not keep the session alive loses it.
        def on_client(_server, client):
            client.connect("new-session", lambda _c, session: session.set_timeout(args.session_timeout))

        server.connect("client-connected", on_client)

        # Expired sessions are only removed when the pool is cleaned (gst-rtsp-server's examples
        # do it on a timer). An expired UDP session stops streaming, as a camera's would.
        def cleanup():
            server.get_session_pool().cleanup()
            return True

        GLib.timeout_add(250, cleanup)

    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on port {args.port}", flush=True)
        return 1
    print(f"READY {server.get_bound_port()}", flush=True)

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
