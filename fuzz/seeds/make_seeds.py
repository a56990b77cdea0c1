#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (fuzz/seeds/<target>/): a few real inputs each, in
each target's input layout (see the doc at the top of fuzz/fuzz_targets/<target>.rs).
Run from anywhere: `python3 fuzz/seeds/make_seeds.py`. The outputs are committed."""

import base64
import hashlib
import hmac
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
COOKIE = bytes.fromhex("2112a442")


def write(target, name, data):
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(HERE, target, name), "wb") as f:
        f.write(data)


def attr(kind, value):
    pad = b"\0" * (-len(value) % 4)
    return struct.pack(">HH", kind, len(value)) + value + pad


def binding_request(username, pwd, transaction=b"\x5a" * 12, controlling=True):
    """A Binding request as a browser sends it: USERNAME, ICE-CONTROLLING, USE-CANDIDATE,
    PRIORITY, MESSAGE-INTEGRITY, FINGERPRINT (RFC 8445 §7.1.1, RFC 8489)."""
    attrs = attr(0x0006, username)
    attrs += attr(0x802A if controlling else 0x8029, b"\x13\x37\xc0\xde\x00\x00\x00\x01")
    attrs += attr(0x0025, b"")
    attrs += attr(0x0024, struct.pack(">I", 1845501695))
    header = lambda body_len: struct.pack(">HH", 0x0001, body_len) + COOKIE + transaction
    mi_len = len(attrs) + 24
    tag = hmac.new(pwd, header(mi_len) + attrs, hashlib.sha1).digest()
    attrs += attr(0x0008, tag)
    fp_len = len(attrs) + 8
    crc = zlib.crc32(header(fp_len) + attrs) ^ 0x5354554E
    attrs += attr(0x8028, struct.pack(">I", crc))
    return header(len(attrs)) + attrs


# RFC 5769 §2.1: a sample request from another implementation; password below.
RFC5769 = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74"
    "002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149a"
    "eaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf"
)
RFC5769_PWD = b"VOkJxbRl1RmTxUk/WvJxBt"
BROWSER_STUN = binding_request(b"H8rj2kq0Lw3xYp1Z:Tz9f", b"Xb3k8sPq0Lm2Vn7Rt5Wy9aC")
RTP = bytes.fromhex("80e01a2b0001e240deadbeef") + b"\x90" * 40

# --- stun: [key length][key][datagram]
write("stun", "rfc5769-request", bytes([len(RFC5769_PWD)]) + RFC5769_PWD + RFC5769)
write("stun", "browser-binding-request",
      bytes([23]) + b"Xb3k8sPq0Lm2Vn7Rt5Wy9aC" + BROWSER_STUN)
write("stun", "rtp", b"\x00" + RTP)

# --- demux: 0 insert | 1 n remove | 2 from to key | 3 from len16 data
ops = bytes([0, 0])                        # two peers
ops += bytes([2, 0, 0, 1])                 # from addr 0, names peer 0, its own password
ops += bytes([3, 0]) + struct.pack(">H", len(RTP)) + RTP  # its media
ops += bytes([2, 0, 1, 0])                 # the hijack: names peer 1, unsigned, same address
ops += bytes([2, 0, 1, 2, 0])              # names peer 1, signed with peer 0's password
ops += bytes([2, 5, 1, 1])                 # peer 1 from its own address
ops += bytes([3, 7]) + struct.pack(">H", len(RFC5769)) + RFC5769  # nobody's request
ops += bytes([1, 0])                       # peer 0 leaves
ops += bytes([3, 0]) + struct.pack(">H", len(RTP)) + RTP
write("demux", "join-hijack-leave", ops)
write("demux", "many-addresses", bytes([0]) + b"".join(bytes([2, a, 0, 1]) for a in range(12)))

# --- sdp_offer: a Chrome WHIP publisher's offer, a Firefox-style viewer offer.
CHROME_OFFER = "\r\n".join([
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS 6b5d2c6e-7c1f-4d8e-9a3b-2f1e0c9d8b7a",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:Tz9f",
    "a=ice-pwd:q2W9x0LkZ3vB8nM1cR5tY7uI",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 3B:8C:1A:6F:22:90:D4:5E:77:0B:C1:9A:4E:F3:12:6D:88:A0:5B:3C:E9:71:2F:D6:04:BB:9E:13:58:C7:AA:60",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendonly",
    "a=msid:6b5d2c6e-7c1f-4d8e-9a3b-2f1e0c9d8b7a 0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:3735928559 cname:Fq2b9XyT0LmN4kWz",
    "a=ssrc:3735928559 msid:6b5d2c6e-7c1f-4d8e-9a3b-2f1e0c9d8b7a 0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45 98",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:Tz9f",
    "a=ice-pwd:q2W9x0LkZ3vB8nM1cR5tY7uI",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 3B:8C:1A:6F:22:90:D4:5E:77:0B:C1:9A:4E:F3:12:6D:88:A0:5B:3C:E9:71:2F:D6:04:BB:9E:13:58:C7:AA:60",
    "a=setup:actpass",
    "a=mid:1",
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:13 urn:3gpp:video-orientation",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=sendonly",
    "a=msid:6b5d2c6e-7c1f-4d8e-9a3b-2f1e0c9d8b7a 9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 goog-remb",
    "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=rtpmap:102 H264/90000",
    "a=rtcp-fb:102 goog-remb",
    "a=rtcp-fb:102 transport-cc",
    "a=rtcp-fb:102 ccm fir",
    "a=rtcp-fb:102 nack",
    "a=rtcp-fb:102 nack pli",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
    "a=rtpmap:103 rtx/90000",
    "a=fmtp:103 apt=102",
    "a=rtpmap:45 AV1/90000",
    "a=rtpmap:98 rtx/90000",
    "a=fmtp:98 apt=45",
    "a=ssrc-group:FID 2882400001 2882400002",
    "a=ssrc:2882400001 cname:Fq2b9XyT0LmN4kWz",
    "a=ssrc:2882400002 cname:Fq2b9XyT0LmN4kWz",
    "",
])
VIEWER_OFFER = "\r\n".join([
    "v=0",
    "o=mozilla...THIS_IS_SDPARTA-99.0 7254810249553421201 0 IN IP4 0.0.0.0",
    "s=-",
    "t=0 0",
    "a=fingerprint:sha-256 0F:74:31:25:CB:A2:13:EC:28:6F:6D:2C:61:FF:5D:C2:BC:B9:DB:3D:98:14:8D:1A:BB:EA:33:0C:A4:60:A8:8E",
    "a=group:BUNDLE 0 1 2",
    "a=ice-options:trickle",
    "a=msid-semantic:WMS *",
    "m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101",
    "c=IN IP4 0.0.0.0",
    "a=recvonly",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1",
    "a=fmtp:101 0-15",
    "a=ice-pwd:7e1d0c7bd2b8f9c5b46e4a4bd4b7d1c8",
    "a=ice-ufrag:a4c1e2f0",
    "a=mid:0",
    "a=rtcp-mux",
    "a=rtpmap:109 opus/48000/2",
    "a=rtpmap:9 G722/8000/1",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=setup:actpass",
    "a=ssrc:2156011813 cname:{5f2e3c41-8a4d-4b7e-9c1f-0e6d2a3b4c5d}",
    "m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 126 127",
    "c=IN IP4 0.0.0.0",
    "a=recvonly",
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1",
    "a=fmtp:120 max-fs=12288;max-fr=60",
    "a=fmtp:124 apt=120",
    "a=fmtp:121 max-fs=12288;max-fr=60",
    "a=fmtp:125 apt=121",
    "a=fmtp:127 apt=126",
    "a=ice-pwd:7e1d0c7bd2b8f9c5b46e4a4bd4b7d1c8",
    "a=ice-ufrag:a4c1e2f0",
    "a=mid:1",
    "a=rtcp-fb:120 nack",
    "a=rtcp-fb:120 nack pli",
    "a=rtcp-fb:120 ccm fir",
    "a=rtcp-fb:120 goog-remb",
    "a=rtcp-fb:120 transport-cc",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:120 VP8/90000",
    "a=rtpmap:124 rtx/90000",
    "a=rtpmap:121 VP9/90000",
    "a=rtpmap:125 rtx/90000",
    "a=rtpmap:126 H264/90000",
    "a=rtpmap:127 rtx/90000",
    "a=setup:actpass",
    "a=ssrc:1432980128 cname:{5f2e3c41-8a4d-4b7e-9c1f-0e6d2a3b4c5d}",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 0.0.0.0",
    "a=sendrecv",
    "a=ice-pwd:7e1d0c7bd2b8f9c5b46e4a4bd4b7d1c8",
    "a=ice-ufrag:a4c1e2f0",
    "a=mid:2",
    "a=setup:actpass",
    "a=sctp-port:5000",
    "a=max-message-size:1073741823",
    "",
])
write("sdp_offer", "chrome-whip-publisher", CHROME_OFFER)
write("sdp_offer", "firefox-viewer-with-datachannel", VIEWER_OFFER)

# --- trickle: RFC 8840 fragments as browsers' WHIP clients PATCH them.
write("trickle", "candidates", "\r\n".join([
    "a=ice-ufrag:Tz9f",
    "a=ice-pwd:q2W9x0LkZ3vB8nM1cR5tY7uI",
    "m=audio 9 UDP/TLS/RTP/SAVPF 0",
    "a=mid:0",
    "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag Tz9f network-id 1",
    "a=candidate:3471623853 1 udp 1686052607 198.51.100.2 61765 typ srflx raddr 192.0.2.1 rport 61764 generation 0",
    "a=candidate:842163049 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 0",
    "",
]))
write("trickle", "end-of-candidates", "a=ice-ufrag:Tz9f\r\na=ice-pwd:q2W9x0LkZ3vB8nM1cR5tY7uI\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=end-of-candidates\r\n")
write("trickle", "ice-restart", "a=ice-ufrag:New1\r\na=ice-pwd:aaaaaaaaaaaaaaaaaaaaaaaa\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n")

# --- jwt: tokens as `floorcast token` mints them, under the target's secret, valid at its
# clock (1_750_000_000); mode byte 0 = raw token, 1 = payload signed by the target.
SECRET = b"fuzz-secret-not-for-production-0123456789"
NOW = 1_750_000_000


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(claims, secret=SECRET, header=None):
    header = header or {"typ": "JWT", "alg": "HS256"}
    signing = b64(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(sig)


viewer = {"sub": "hub-library", "name": "Library hub", "exp": NOW + 3000, "session": "igf-main",
          "role": "hub", "hub": "Library", "iat": NOW - 600}
strict = {"sub": "cap-1", "name": "Captioner", "exp": NOW + 1800, "session": "*",
          "role": "captioner", "iat": NOW - 60, "iss": "floorcast-fuzz", "aud": ["hall-a", "x"]}
write("jwt", "hub-token", b"\x00" + token(viewer).encode())
write("jwt", "strict-captioner-token", b"\x00" + token(strict).encode())
write("jwt", "forged-token", b"\x00" + token(viewer, secret=b"guess").encode())
write("jwt", "alg-none", b"\x00" + token(viewer, header={"alg": "none"}).encode())
write("jwt", "payload-moderator", b"\x01" + json.dumps(
    {"sub": "mod", "exp": NOW + 60, "session": "s1", "role": "moderator", "nbf": NOW}).encode())
write("jwt", "header-and-payload", b"\x02" + b'{"alg":"HS256","kid":"k1"}\n' + json.dumps(viewer).encode())

# --- cart: posts separated by NUL, each [seconds since the last][query]\n[body]
posts = [
    (1, "seq=1&lang=en-US&token=abc", "Good morning, and welcome to the session."),
    (2, "seq=2&lang=en-US", "Our first speaker is joining from Nairobi."),
    (0, "seq=2&lang=en-US", "Our first speaker is joining from Nairobi."),
    (3, "seq=3&lang=fr_FR", "Bonjour à toutes et à tous."),
    (1, "seq=4", "   "),
    (70, "seq=1&lang=en-US", "The captioner restarted."),
    (1, "seq=999999999&lang=en-US", "too far"),
    (1, "lang=en-US", "no seq"),
]
write("cart", "session", b"\0".join(bytes([dt]) + q.encode() + b"\n" + body.encode()
                                      for dt, q, body in posts))

# --- floor_bodies: [selector: 0 raise, 1 queue patch, 2 grant, 3 extend, 4 end query][body]
write("floor_bodies", "raise", b"\x00" + b'{"topic":"Question on the draft outcome, para 12","language":"fr","head_count":40}')
write("floor_bodies", "queue-patch", b"\x01" + b'{"policy":"hub_round_robin","panel_size":2,"default_limit_s":180,"pin":2,"move":{"hand":1,"position":0}}')
write("floor_bodies", "grant", b"\x02" + b'{"hand":2,"limit_s":120}')
write("floor_bodies", "extend", b"\x03" + b'{"extend_s":60}')
write("floor_bodies", "end-query", b"\x04" + b"hand=1&token=eyJhbGciOiJIUzI1NiJ9.e30.x")
write("floor_bodies", "raise-as-text-plain", b"\x80" + b'{"topic":"x"}')

# --- tcp_framing: [c: largest frame 1 + 8c, reads of c % 7 + 1 bytes][stream]
stun_request = struct.pack(">HHI", 0x0001, 0, 0x2112A442) + bytes(12)
write("tcp_framing", "stun-then-rtp", b"\xff" + struct.pack(">H", len(stun_request)) + stun_request
      + struct.pack(">H", 4) + b"\x80\x60\x00\x01")
write("tcp_framing", "split-datagrams", b"\x03" + b"abc\xffdefgh\xff\xffi")
write("tcp_framing", "oversize", b"\x00" + b"\x08\x00" + bytes(16))
