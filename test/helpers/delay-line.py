#!/usr/bin/python3
"""A point-to-point IP link with a configurable one-way delay, for tests.

This machine's kernel is built without sch_netem, so `tc qdisc ... netem
delay` is unavailable. This does the same job in user space: it opens two TUN
devices (the test moves one into an agent's network namespace and addresses
both ends), and copies every packet from one to the other after the current
delay. Commands on stdin, one per line:

    delay <ms>   one-way delay applied to packets in both directions
    drop         discard every packet (the link goes silent, as a partition)
    pass         forward again

It prints "ready <tunA> <tunB>" once both devices exist and "ok" after each
command. It exits when stdin closes; the devices go with it.
"""
import asyncio
import fcntl
import os
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


async def main() -> None:
    name_a, name_b = sys.argv[1], sys.argv[2]
    state = {"delay": float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.0, "drop": False}
    fds = {name_a: open_tun(name_a), name_b: open_tun(name_b)}
    loop = asyncio.get_running_loop()

    def write(fd: int, packet: bytes) -> None:
        try:
            os.write(fd, packet)
        except OSError:
            pass  # the far end is down or gone: the packet is lost, as on a wire

    def pump(src: int, dst: int) -> None:
        while True:
            try:
                packet = os.read(src, 65536)
            except BlockingIOError:
                return
            except OSError:
                return
            if state["drop"]:
                continue
            if state["delay"] > 0:
                loop.call_later(state["delay"], write, dst, packet)
            else:
                write(dst, packet)

    loop.add_reader(fds[name_a], pump, fds[name_a], fds[name_b])
    loop.add_reader(fds[name_b], pump, fds[name_b], fds[name_a])
    print(f"ready {name_a} {name_b}", flush=True)

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        words = line.decode().split()
        if not words:
            continue
        if words[0] == "delay" and len(words) == 2:
            state["delay"] = float(words[1]) / 1000
        elif words[0] == "drop":
            state["drop"] = True
        elif words[0] == "pass":
            state["drop"] = False
        else:
            print(f"error unknown command {line.decode().strip()}", flush=True)
            continue
        print("ok", flush=True)


asyncio.run(main())
