#!/usr/bin/env bash
# `coordctl report RUN -o report.html` end to end: a small real run (2 ranks,
# head then fine-tuning, tiny synthetic data, random weights), the HTML page
# written, then rendered in headless Chromium. Asserts from the DOM after the
# page's script ran: three learning curves with train and validation lines
# and the phase boundary, a num_classes^2 heatmap, the per-class table
# (whose sorting the page checks itself with #selftest), and 25 test samples,
# each the right image and label of test records 0..24 (decoded from the
# PNG data: URI and compared with test.bin) with 3 probability bars. No
# console errors or refused loads; a screenshot is taken. Exits 77 (skip)
# when chromium is not installed.
# usage: report_html_test.sh BIN_DIR MPIEXEC
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
if [[ -z "$CHROMIUM" ]]; then
  echo "SKIP: chromium is not installed (apt-get install chromium)"
  exit 77
fi
source "$(dirname "$0")/train_lib.sh"

make_data 600 100 7
start_coordinator "shapes=$TMP/data"
train 2 "$TMP/train.log" --run-name html --dataset shapes --run-dir "$TMP/run" \
  --num-classes 10 --image-size 32 --batch-size 16 --head-epochs 2 --finetune-epochs 1 \
  --finetune-lr 1e-4 --seed 3 || { cat "$TMP/train.log"; fail "trainer train exited non-zero"; }
expect_contains "$TMP/train.log" "finished: "

ctl report html -o "$TMP/out/report.html" >"$TMP/ctl.out" 2>&1 &&
  fail "report -o into a missing folder succeeded"
expect_contains "$TMP/ctl.out" "cannot write the HTML report to $TMP/out/report.html"
ctl report nosuchrun -o "$TMP/none.html" >"$TMP/ctl.out" 2>&1 && fail "report of an unknown run"
expect_contains "$TMP/ctl.out" "no run 'nosuchrun'"
[[ ! -e "$TMP/none.html" ]] || fail "a failed report left $TMP/none.html"

ctl report html -o "$TMP/report.html" >"$TMP/ctl.out" 2>&1 || { cat "$TMP/ctl.out"; fail "coordctl report -o"; }
expect_contains "$TMP/ctl.out" "wrote $TMP/report.html"
ls -A "$TMP" | grep -q '^\.report\.html' && fail "a temporary file was left beside report.html"

# Headless Chromium, no network, a fresh profile; bounded in time.
chrome() {
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --no-first-run --user-data-dir="$TMP/profile" --enable-logging=stderr --v=0 \
    --virtual-time-budget=5000 "$@"
}
chrome --dump-dom "file://$TMP/report.html#selftest" >"$TMP/dom.html" 2>"$TMP/chrome-dom.log" ||
  { cat "$TMP/chrome-dom.log"; fail "chromium --dump-dom"; }
chrome --screenshot="$TMP/report.png" --window-size=1400,3000 "file://$TMP/report.html" \
  >"$TMP/chrome-shot.out" 2>"$TMP/chrome-shot.log" || { cat "$TMP/chrome-shot.log"; fail "chromium --screenshot"; }
for log in "$TMP/chrome-dom.log" "$TMP/chrome-shot.log"; do
  if grep -E "CONSOLE|Uncaught|Refused to|Content Security Policy" "$log"; then
    fail "the page logged console errors ($log)"
  fi
done
py - "$TMP/report.png" <<'PY' || fail "screenshot"
import struct, sys
png = open(sys.argv[1], "rb").read()
assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", png[16:24])
assert (w, h) == (1400, 3000), (w, h)
print("screenshot %dx%d, %d bytes" % (w, h, len(png)))
PY

py - "$TMP/dom.html" "$TMP/data" <<'PY' || fail "DOM check"
import base64, html.parser, sys, zlib
dom, data = open(sys.argv[1]).read(), sys.argv[2]

class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.elements = []  # (tag, attrs, path of enclosing ids/classes)
        self.stack = []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a, list(self.stack)))
        if tag not in ("img", "br", "meta", "hr", "input", "link"):  # void elements
            self.stack.append((tag, a.get("id"), a.get("class", "")))
    def handle_endtag(self, tag):
        if any(t == tag for t, _, _ in self.stack):
            while self.stack.pop()[0] != tag:
                pass

page = Page()
page.feed(dom)
def find(tag, cls=None, inside_id=None):
    return [(t, a, p) for t, a, p in page.elements if t == tag
            and (cls is None or cls in a.get("class", "").split())
            and (inside_id is None or any(i == inside_id for _, i, _ in p))]

status = [a for t, a, _ in page.elements if a.get("id") == "script-status"]
assert len(status) == 1
status = status[0]
assert status.get("data-state") == "ready", status
assert status.get("data-selftest") == "pass", status
assert status.get("data-images-decoded") == "25", status

curves = find("svg", "curve")
assert [a["data-metric"] for _, a, _ in curves] == ["loss", "top1", "top3"], curves
for split in ("train", "validation"):
    lines = find("polyline", "series")
    assert sum(split in a["class"].split() for _, a, _ in lines) == 3, (split, lines)
    points = [a for _, a, _ in find("circle", "point") if split in a["class"].split()]
    assert len(points) == 3 * 3, (split, len(points))  # 2 head + 1 finetune epochs, 3 charts
assert len(find("line", "phase-boundary")) == 3

cells = find("rect", "cell", "confusion")
assert len(cells) == 10 * 10, len(cells)
rows = [p for t, a, p in page.elements if t == "tr" and any(i == "classes" for _, i, _ in p)]
assert len(rows) == 1 + 10, len(rows)

# Ranks (one row per rank) and the run's configuration as the trainer recorded it.
rank_rows = [p for t, a, p in page.elements if t == "tr" and any(i == "rank-table" for _, i, _ in p)]
assert len(rank_rows) == 1 + 2, len(rank_rows)
assert '"batch-size": 16' in dom and '"dataset": "shapes"' in dom, "config missing"

names = open(data + "/fine_label_names.txt").read().split("\n")
test = open(data + "/test.bin", "rb").read()
figures = find("figure", "sample", "samples")
images = find("img", None, "samples")
bars = find("span", "bar", "samples")
assert len(figures) == 25 and len(images) == 25 and len(bars) == 75, (len(figures), len(images), len(bars))
indices = [int(a["data-index"]) for _, a, _ in figures]
assert indices == list(range(25)), indices
for (_, fig, _), (_, img, _) in zip(figures, images):
    i = int(fig["data-index"])
    record = test[i * 3074:(i + 1) * 3074]
    label = names[record[1]]
    assert img["alt"] == "sample %d: %s" % (i, label), (img["alt"], label)
    png = base64.b64decode(img["src"].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    idat, at = b"", 8
    while at < len(png):
        n = int.from_bytes(png[at:at + 4], "big")
        if png[at + 4:at + 8] == b"IDAT":
            idat += png[at + 8:at + 8 + n]
        assert zlib.crc32(png[at + 4:at + 8 + n]) == int.from_bytes(png[at + 8 + n:at + 12 + n], "big")
        at += 12 + n
    raw = zlib.decompress(idat)
    pixels = b"".join(raw[y * 97 + 1:(y + 1) * 97] for y in range(32))
    planar = bytes(pixels[p * 3 + c] for c in range(3) for p in range(1024))
    assert planar == record[2:], "sample %d's image differs from test.bin record %d" % (i, i)
print("DOM: 3 curves, %d heatmap cells, %d class rows, %d samples with %d bars; images match;"
      " %d ranks" % (len(cells), len(rows) - 1, len(figures), len(bars), len(rank_rows) - 1))
PY
echo "PASS"
