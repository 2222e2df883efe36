"""Write the seed corpus of fuzz_frame.c to corpus/frame/ (stdlib only).

Each seed is one selector byte (what the receiver expects; see fuzz_frame.c)
followed by a stream of frames as a peer might send them.

    python tests/c/gen_frame_corpus.py
"""

import struct
import zlib
from pathlib import Path

OUT = Path(__file__).with_name("corpus") / "frame"
DATA, HELLO, AUTH, PING, PONG, SWITCH, GOODBYE = 3, 1, 2, 4, 5, 6, 7
F16, BF16, F32 = 10, 11, 12


def header(kind, dtype, seq, length, crc=None):
    flags = 0 if crc is None else 1
    return struct.pack("<IBBBBQQII", 0x52544C42, 1, kind, dtype, flags, seq, length, crc or 0, 0)


def sel(kind, dtype=0, exact=True, cap=16, check_seq=True):
    k = {DATA: 0, HELLO: 1, PING: 2, SWITCH: 3}[kind]
    d = (dtype - F16 + 1) & 3 if kind == DATA else 0
    c = {0: 0, 1: 1, 16: 2, 4096: 3}[cap]
    return bytes([k | d << 2 | int(exact) << 4 | c << 5 | int(not check_seq) << 7])


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    payload = bytes(range(16))
    seeds = {
        "data_f32_exact": sel(DATA, F32) + header(DATA, F32, 0, 16) + payload + header(DATA, F32, 1, 16) + payload,
        "data_bf16_bounded": sel(DATA, BF16, exact=False, cap=4096) + header(DATA, BF16, 0, 10) + payload[:10],
        "data_crc": sel(DATA, F32) + header(DATA, F32, 0, 16, 0) + payload,
        "data_then_goodbye": sel(DATA, F32) + header(DATA, F32, 0, 16) + payload + header(GOODBYE, 0, 1, 0),
        "hello_json": sel(HELLO, exact=False, cap=4096) + header(HELLO, 0, 0, 13) + b'{"v":1,"ok":1}'[:13],
        "ping_empty": sel(PING, cap=0) + header(PING, 0, 0, 0) + header(PING, 0, 1, 0),
        "switch_json": sel(SWITCH, exact=False, cap=4096) + header(SWITCH, 0, 0, 11) + b'{"epoch":1}',
        "oversize": sel(DATA, F32) + header(DATA, F32, 0, 1 << 40),
        "wrong_seq": sel(DATA, F32) + header(DATA, F32, 9, 16) + payload,
        "half_frame": sel(DATA, F32) + header(DATA, F32, 0, 16)[:20],
    }
    # a payload checksum the decoder must verify
    seeds["data_crc"] = sel(DATA, F32) + header(DATA, F32, 0, 16, zlib.crc32(payload)) + payload
    for name, blob in seeds.items():
        (OUT / name).write_bytes(blob)
    print(f"{len(seeds)} seeds in {OUT}")


if __name__ == "__main__":
    main()
