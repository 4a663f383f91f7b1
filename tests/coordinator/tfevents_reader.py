#!/usr/bin/env python3
"""An independent reader of TensorBoard event files, written from the format
specification only (no TensorFlow, no generated protobuf code), to check what
the coordinator writes.

  tfevents_reader.py PATH...     files, or directories searched for *tfevents*

Each file is TFRecord framing: uint64 length (little endian), uint32 masked
CRC-32C of those 8 bytes, the data, uint32 masked CRC-32C of the data, where
mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2**32). Each record is a
tensorboard.Event in protobuf wire format: wall_time = 1 (double), step = 2
(int64), file_version = 3 (string), summary = 5 (Summary); Summary.value = 1
(repeated Value); Value.tag = 1 (string), simple_value = 2 (float).

Prints JSON: {"files": [{"path", "run", "records", "file_version"}],
"scalars": [{"run", "file", "step", "wall_time", "tag", "value"}]}, where run
is the name of the file's directory. Exits 1 naming the file, record and
offset on the first defect: a CRC that does not match, a truncated record, a
malformed message, a first record that is not the file version.
"""
import json
import os
import struct
import sys


class FormatError(Exception):
    pass


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(data):
    """Yields (offset, record bytes), verifying the framing."""
    offset = 0
    index = 0
    while offset < len(data):
        index += 1
        where = "record %d at offset %d" % (index, offset)
        if len(data) - offset < 12:
            raise FormatError("%s: truncated header (%d bytes)" % (where, len(data) - offset))
        header = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
        if length_crc != masked_crc32c(header):
            raise FormatError("%s: length CRC 0x%08x does not match 0x%08x"
                              % (where, length_crc, masked_crc32c(header)))
        start = offset + 12
        if len(data) - start < length + 4:
            raise FormatError("%s: truncated (length %d, %d bytes follow)"
                              % (where, length, len(data) - start))
        record = data[start:start + length]
        (data_crc,) = struct.unpack("<I", data[start + length:start + length + 4])
        if data_crc != masked_crc32c(record):
            raise FormatError("%s: data CRC 0x%08x does not match 0x%08x"
                              % (where, data_crc, masked_crc32c(record)))
        yield offset, record
        offset = start + length + 4


def read_varint(data, pos):
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise FormatError("varint runs past the end of the message")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise FormatError("varint longer than 10 bytes")


def fields(data):
    """Yields (field number, wire type, value) of one message. value: an int
    for varints, bytes for fixed32/fixed64/length-delimited."""
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise FormatError("field number 0")
        if wire == 0:
            value, pos = read_varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = read_varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise FormatError("field %d has unsupported wire type %d" % (number, wire))
        if pos > len(data):
            raise FormatError("field %d runs past the end of the message" % number)
        yield number, wire, value


def expect_wire(name, wire, expected):
    if wire != expected:
        raise FormatError("%s has wire type %d (expected %d)" % (name, wire, expected))


def decode_value(data):
    value = {"tag": "", "simple_value": None}
    for number, wire, raw in fields(data):
        if number == 1:
            expect_wire("Value.tag", wire, 2)
            value["tag"] = raw.decode("utf-8")
        elif number == 2:
            expect_wire("Value.simple_value", wire, 5)
            (value["simple_value"],) = struct.unpack("<f", raw)
    return value


def decode_event(data):
    event = {"wall_time": 0.0, "step": 0, "file_version": None, "values": None}
    for number, wire, raw in fields(data):
        if number == 1:
            expect_wire("Event.wall_time", wire, 1)
            (event["wall_time"],) = struct.unpack("<d", raw)
        elif number == 2:
            expect_wire("Event.step", wire, 0)
            event["step"] = raw - (1 << 64) if raw >= (1 << 63) else raw
        elif number == 3:
            expect_wire("Event.file_version", wire, 2)
            event["file_version"] = raw.decode("utf-8")
        elif number == 5:
            expect_wire("Event.summary", wire, 2)
            event["values"] = []
            for summary_number, summary_wire, summary_raw in fields(raw):
                if summary_number == 1:
                    expect_wire("Summary.value", summary_wire, 2)
                    event["values"].append(decode_value(summary_raw))
    return event


def read_file(path):
    with open(path, "rb") as f:
        data = f.read()
    info = {"path": path, "run": os.path.basename(os.path.dirname(os.path.abspath(path))),
            "records": 0, "file_version": None}
    scalars = []
    for offset, record in read_records(data):
        info["records"] += 1
        try:
            event = decode_event(record)
        except FormatError as e:
            raise FormatError("record %d at offset %d: %s" % (info["records"], offset, e))
        if info["records"] == 1:
            if not (event["file_version"] or "").startswith("brain.Event:"):
                raise FormatError("record 1: file_version is %r (expected brain.Event:2)"
                                  % event["file_version"])
            info["file_version"] = event["file_version"]
            continue
        for value in event["values"] or []:
            if value["simple_value"] is None:
                continue
            scalars.append({"run": info["run"], "file": os.path.basename(path),
                            "step": event["step"], "wall_time": event["wall_time"],
                            "tag": value["tag"], "value": value["simple_value"]})
    if info["records"] == 0:
        raise FormatError("empty file (expected at least the file_version record)")
    return info, scalars


def event_files(paths):
    for path in paths:
        if os.path.isdir(path):
            for root, _, names in sorted(os.walk(path)):
                for name in sorted(names):
                    if "tfevents" in name:
                        yield os.path.join(root, name)
        else:
            yield path


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = {"files": [], "scalars": []}
    for path in event_files(argv[1:]):
        try:
            info, scalars = read_file(path)
        except (OSError, FormatError, UnicodeDecodeError) as e:
            print("tfevents_reader: %s: %s" % (path, e), file=sys.stderr)
            return 1
        out["files"].append(info)
        out["scalars"].extend(scalars)
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
