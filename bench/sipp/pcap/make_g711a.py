#!/usr/bin/env python3
"""Writes g711a-5s.pcap: 5 s of a 440 Hz tone as G.711 A-law RTP (PT 8), 20 ms packets
(160 bytes payload, 172-byte RTP packets), for SIPp's play_pcap_audio. SIPp replaces the
addresses and ports; only the RTP stream and the timing matter. Generated here so the repo
ships no third-party capture."""
import math
import struct
import sys


def alaw(sample):
    """ITU-T G.711 A-law encoding of a 16-bit linear sample."""
    sign = 0x80 if sample >= 0 else 0
    if sample < 0:
        sample = -sample - 1
    sample = min(sample, 32635) >> 3
    if sample >= 32:
        exp = 1
        while sample >= 64 and exp < 7:
            sample >>= 1
            exp += 1
        mant = (sample >> 1) & 0x0F
        code = (exp << 4) | mant
    else:
        code = sample >> 1
    return (code | sign) ^ 0x55


def main(path, seconds=5):
    out = open(path, "wb")
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # Ethernet
    ssrc, seq, ts = 0x5EED0001, 1000, 0
    t0 = 1_700_000_000
    for n in range(seconds * 50):
        payload = bytes(
            alaw(int(8000 * math.sin(2 * math.pi * 440 * (ts + i) / 8000))) for i in range(160)
        )
        rtp = struct.pack("!BBHII", 0x80, 8 | (0x80 if n == 0 else 0), seq, ts, ssrc) + payload
        udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
        frame = b"\x00" * 12 + b"\x08\x00" + ip
        usec = n * 20_000
        out.write(struct.pack("<IIII", t0 + usec // 1_000_000, usec % 1_000_000, len(frame), len(frame)))
        out.write(frame)
        seq, ts = seq + 1, ts + 160
    out.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "g711a-5s.pcap")
