#!/usr/bin/python3
"""Runs a command on a pseudo-terminal of a given size and records what it
draws, for watch_live_e2e_test.sh.

  run_in_pty.py --out FILE [--columns 120] [--rows 40] [--timeout 60]
                [--interrupt-when TEXT] -- COMMAND...

Everything the command writes (stdout and stderr: both are the terminal) goes
to FILE, raw, as it comes (a test may wait on what is drawn). With --interrupt-when, SIGINT is sent to the command once TEXT
has appeared in its output (as Ctrl-C would). Exits with the command's exit
code; 124 when it outlived --timeout (it is killed then).
"""
import argparse
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--columns", type=int, default=120)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--interrupt-when")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (expected -- COMMAND...)")

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", args.rows, args.columns, 0, 0))
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)

    captured = bytearray()
    out = open(args.out, "wb")
    interrupted = False
    deadline = time.monotonic() + args.timeout
    timed_out = False
    while True:
        if time.monotonic() > deadline:
            timed_out = True
            proc.kill()
            break
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                chunk = b""
            if not chunk:
                break
            captured += chunk
            out.write(chunk)
            out.flush()
        if (args.interrupt_when and not interrupted and
                args.interrupt_when.encode() in captured):
            proc.send_signal(signal.SIGINT)
            interrupted = True
    code = proc.wait()
    os.close(master)
    out.close()
    if timed_out:
        print(f"run_in_pty: {command[0]} still ran after {args.timeout}s; killed",
              file=sys.stderr)
        return 124
    return code


if __name__ == "__main__":
    sys.exit(main())
