// The HTML run report (coordctl report RUN -o FILE) from hand-built
// messages: the page's structure and element counts, escaping of every
// string from the run, self-containedness, and the PNG/base64 encoders
// (checked against known vectors and by decoding the PNG back). No server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <regex>
#include <string>

#include "coordinator/coordctl/report_html.h"
#include "coordinator/coordctl/report_html_png.h"
#include "coordinator/coordctl/report_html_svg.h"
#include "tests/coordinator/coordctl_test_util.h"

namespace xfer::coordinator::coordctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

int count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

v1::EpochMetrics epoch(const std::string& phase, int index, v1::SplitKind split, double loss,
                       double top1) {
  return testing::make_epoch(phase, index, split, loss, top1, std::min(1.0, top1 + 0.2),
                             /*samples=*/1000, /*images_per_second=*/250);
}

// head epochs 1-2 and finetune epochs 1-3, train and validation each, and a
// test evaluation after each phase.
v1::HistoryResponse two_phase_history() {
  v1::HistoryResponse h;
  for (int i = 1; i <= 2; ++i) {
    *h.add_epochs() = epoch("head", i, v1::SPLIT_KIND_TRAIN, 3.0 - 0.5 * i, 0.1 * i);
    *h.add_epochs() = epoch("head", i, v1::SPLIT_KIND_VALIDATION, 3.1 - 0.5 * i, 0.09 * i);
  }
  *h.add_epochs() = epoch("head", 2, v1::SPLIT_KIND_TEST, 2.2, 0.18);
  for (int i = 1; i <= 3; ++i) {
    *h.add_epochs() = epoch("finetune", i, v1::SPLIT_KIND_TRAIN, 1.5 - 0.2 * i, 0.3 + 0.1 * i);
    *h.add_epochs() =
        epoch("finetune", i, v1::SPLIT_KIND_VALIDATION, 1.6 - 0.2 * i, 0.3 + 0.09 * i);
  }
  *h.add_epochs() = epoch("finetune", 3, v1::SPLIT_KIND_TEST, 1.0, 0.55);
  return h;
}

// A 2x2 RGB image: red, green / blue, white.
std::string tiny_image() {
  //                  R plane      G plane      B plane
  return std::string(
      "\xff\x00\x00\xff"
      "\x00\xff\x00\xff"
      "\x00\x00\xff\xff",
      12);
}

v1::RunReport report_of(int classes, int samples) {
  v1::RunReport r;
  r.set_run("r1");
  r.set_split("test");
  r.set_num_classes(classes);
  r.set_loss(1.25);
  r.set_top1(0.5);
  r.set_top3(0.75);
  for (int t = 0; t < classes; ++t) {
    auto* c = r.add_classes();
    c->set_index(t);
    c->set_label("class_" + std::to_string(t));
    c->set_precision(0.1 * (t % 10));
    c->set_recall(0.5);
    c->set_f1(0.25);
    c->set_support(t + 1);
    for (int p = 0; p < classes; ++p) r.add_confusion(p == t ? t + 1 : 0);
  }
  for (int i = 0; i < samples; ++i) {
    auto* s = r.add_predictions();
    s->set_index(i);
    s->set_label(i % classes);
    s->set_channels(3);
    s->set_height(2);
    s->set_width(2);
    s->set_image(tiny_image());
    for (int k = 0; k < 3; ++k) {
      s->add_top_classes((i + k) % classes);
      s->add_top_probabilities(0.6f / static_cast<float>(k + 1));
    }
  }
  return r;
}

ReportPageInputs inputs_of(int classes, int samples) {
  ReportPageInputs in;
  in.run.set_name("r1");
  in.run.set_dataset("cifar");
  in.run.set_world_size(2);
  in.run.set_state(v1::RUN_STATE_COMPLETED);
  in.run.set_attempt(1);
  in.run.set_started_unix_ms(1767323045000);
  in.run.set_ended_unix_ms(1767323045000 + 185000);
  in.run.set_config_json(R"({"batch_size": 64, "note": "a<b & \"c\""})");
  in.history = two_phase_history();
  in.report = report_of(classes, samples);
  for (int r = 0; r < 2; ++r) {
    auto* rank = in.ranks.add_ranks();
    rank->set_rank(r);
    rank->set_phase("finetune");
    rank->set_epoch(3);
    rank->set_images_per_second(120.5 + r);
  }
  in.generated_unix_ms = 1767323245000;
  return in;
}

// The text between `<svg class="curve" data-metric="METRIC"` and its </svg>.
std::string curve_of(const std::string& page, const std::string& metric) {
  const std::size_t start = page.find("<svg class=\"curve\" data-metric=\"" + metric + "\"");
  if (start == std::string::npos) return "";
  return page.substr(start, page.find("</svg>", start) - start);
}

TEST(ReportHtmlTest, HasEverySectionWithTheRightCounts) {
  const std::string page = render_report_html(inputs_of(10, 25));
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  for (const char* id : {"summary", "curves", "confusion", "classes", "samples", "epochs", "ranks",
                         "config", "script-status"}) {
    EXPECT_EQ(count(page, std::string("id=\"") + id + "\""), 1) << id;
  }
  // Three learning curves, each with train and validation lines, 5 points
  // each, 2 test markers and one phase boundary.
  EXPECT_EQ(count(page, "<svg class=\"curve\""), 3);
  for (const char* metric : {"loss", "top1", "top3"}) {
    const std::string svg = curve_of(page, metric);
    ASSERT_FALSE(svg.empty()) << metric;
    EXPECT_EQ(count(svg, "<polyline class=\"series train\""), 1) << metric;
    EXPECT_EQ(count(svg, "<polyline class=\"series validation\""), 1) << metric;
    EXPECT_EQ(count(svg, "<circle class=\"point train\""), 5) << metric;
    EXPECT_EQ(count(svg, "<circle class=\"point validation\""), 5) << metric;
    EXPECT_EQ(count(svg, "<circle class=\"point test\""), 2) << metric;
    EXPECT_EQ(count(svg, "class=\"phase-boundary\""), 1) << metric;
    EXPECT_THAT(svg, HasSubstr(">head</text>"));
    EXPECT_THAT(svg, HasSubstr(">finetune</text>"));
  }
  // Heatmap: num_classes^2 cells; per-class table: num_classes rows.
  EXPECT_EQ(count(page, "<rect class=\"cell\""), 100);
  EXPECT_EQ(count(page, "<tr><td data-value="), 10);
  // Grid: 25 samples, an image and three bars each.
  EXPECT_EQ(count(page, "<figure class=\"sample"), 25);
  EXPECT_EQ(count(page, "src=\"data:image/png;base64,"), 25);
  EXPECT_EQ(count(page, "<span class=\"bar\""), 75);
  // Epoch table: every history entry; ranks table: both ranks.
  EXPECT_EQ(count(page, "<tr><td class=\"text\">head</td>"), 5);
  EXPECT_EQ(count(page, "<tr><td class=\"text\">finetune</td>"), 7);
  EXPECT_THAT(page, HasSubstr("<td>1</td><td class=\"text\">finetune</td>"));
  // Timings: start, end, duration.
  EXPECT_THAT(page, HasSubstr("2026-01-02 03:04:05Z"));
  EXPECT_THAT(page, HasSubstr("3m05s"));
  EXPECT_THAT(page, HasSubstr("<div class=\"value\">50.00%</div><div class=\"name\">top-1"));
}

TEST(ReportHtmlTest, SaysWhatTheMacroCardsAverageOver) {
  ReportPageInputs in = inputs_of(10, 0);
  EXPECT_THAT(render_report_html(in),
              HasSubstr("<p class=\"muted\" id=\"macro-scope\">Macro averages: over all 10 "
                        "classes.</p>"));
  // Classes 7 and 9 never occur (an empty row and column; report_of's matrix
  // is diagonal); 7's label needs escaping. The stored macro F1 is the mean
  // over the 8 classes that occur (0.25 each), as a current trainer's.
  in.report->set_macro_f1(0.25);
  in.report->mutable_classes(7)->set_label("a<b");
  for (int c : {7, 9}) {
    v1::ClassMetrics* m = in.report->mutable_classes(c);
    m->set_precision(0);
    m->set_recall(0);
    m->set_f1(0);
    m->set_support(0);
    in.report->set_confusion(c * 10 + c, 0);
  }
  EXPECT_THAT(render_report_html(in),
              HasSubstr("<p class=\"muted\" id=\"macro-scope\">Macro averages: over the 8 of 10 "
                        "classes that occur (in the true labels or the predictions). 2 classes "
                        "never occur: a&lt;b, class_9.</p>"));
}

TEST(ReportHtmlTest, CurvesPlaceEpochsOfEachPhaseAfterTheLastOnes) {
  const std::string svg = learning_curve_svg(two_phase_history(), CurveMetric::kTop1);
  // Hover texts name the phase's own epoch numbers.
  EXPECT_THAT(svg, HasSubstr("<title>finetune epoch 3 validation: top1 57.00% (1000 samples)"));
  EXPECT_THAT(svg, HasSubstr("<title>head epoch 2 test: top1 18.00%"));
  // x ticks run over all phases: 1..5.
  EXPECT_THAT(svg, HasSubstr(">5</text>"));
  EXPECT_THAT(svg, Not(HasSubstr(">6</text>")));
  EXPECT_THAT(svg, HasSubstr("<title>finetune starts after 2 epochs</title>"));
  // A non-finite value is left out, not drawn at NaN.
  v1::HistoryResponse h = two_phase_history();
  h.mutable_epochs(0)->set_top1(std::numeric_limits<double>::quiet_NaN());
  const std::string gap = learning_curve_svg(h, CurveMetric::kTop1);
  EXPECT_EQ(count(gap, "<circle class=\"point train\""), 4);
  EXPECT_THAT(gap, Not(HasSubstr("nan")));
  // No history yet.
  EXPECT_THAT(learning_curve_svg({}, CurveMetric::kLoss), HasSubstr("no epochs yet"));
}

TEST(ReportHtmlTest, EscapesEveryStringFromTheRun) {
  ReportPageInputs in = inputs_of(3, 2);
  in.run.set_name("r<1>");
  in.run.set_message("failed: <script>alert(1)</script>");
  in.run.add_events("started & \"quoted\"");
  in.report->mutable_classes(1)->set_label("<b>bold</b> & 'q'");
  in.history.mutable_epochs(0)->set_phase("he<ad");
  const std::string page = render_report_html(in);
  EXPECT_THAT(page, Not(HasSubstr("<b>bold")));
  EXPECT_THAT(page, Not(HasSubstr("<script>alert")));
  EXPECT_THAT(page, Not(HasSubstr("he<ad")));
  EXPECT_THAT(page, Not(HasSubstr("r<1>")));
  EXPECT_THAT(page, HasSubstr("&lt;b&gt;bold&lt;/b&gt; &amp; &#39;q&#39;"));
  EXPECT_THAT(page, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(page, HasSubstr("started &amp; &quot;quoted&quot;"));
  EXPECT_THAT(page, HasSubstr("<title>xfer run r&lt;1&gt;</title>"));
  // The config is pretty-printed JSON, escaped.
  EXPECT_THAT(page, HasSubstr("&quot;note&quot;: &quot;a&lt;b &amp; \\&quot;c\\&quot;&quot;"));
  // Exactly one script element: the page's own.
  EXPECT_EQ(count(page, "<script"), 1);
  // Class names reach the heatmap's hover text, escaped.
  EXPECT_THAT(page, HasSubstr("predicted 1 (&lt;b&gt;bold&lt;/b&gt; &amp; &#39;q&#39;)"));
  EXPECT_EQ(html_escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
}

TEST(ReportHtmlTest, FetchesNothing) {
  const std::string page = render_report_html(inputs_of(100, 25));
  EXPECT_THAT(page, Not(HasSubstr("http:")));
  EXPECT_THAT(page, Not(HasSubstr("https:")));
  EXPECT_THAT(page, Not(HasSubstr("//cdn")));
  EXPECT_THAT(page, Not(HasSubstr("<link")));
  EXPECT_THAT(page, Not(HasSubstr("url(")));
  EXPECT_THAT(page, HasSubstr("content=\"default-src 'none'; img-src data:;"));
  // Every src is a data: URI.
  const std::regex src("src=\"([^\"]*)\"");
  for (std::sregex_iterator it(page.begin(), page.end(), src), end; it != end; ++it) {
    EXPECT_EQ((*it)[1].str().rfind("data:image/png;base64,", 0), 0u) << (*it)[1].str();
  }
  EXPECT_EQ(count(page, "<rect class=\"cell\""), 100 * 100);
  // A CIFAR-100 page stays small enough to mail: about 2 MB, mostly the heatmap.
  EXPECT_LT(page.size(), 3'000'000u);
}

TEST(ReportHtmlTest, WithoutAReportShowsCurvesRanksAndConfig) {
  ReportPageInputs in = inputs_of(3, 0);
  in.report.reset();
  in.run.set_state(v1::RUN_STATE_RUNNING);
  in.run.set_ended_unix_ms(0);
  const std::string page = render_report_html(in);
  EXPECT_THAT(page, HasSubstr("No test report yet"));
  EXPECT_THAT(page, HasSubstr("3m20s so far"));  // generated 200 s after the start
  EXPECT_EQ(count(page, "<svg class=\"curve\""), 3);
  EXPECT_EQ(count(page, "<rect class=\"cell\""), 0);
  EXPECT_EQ(count(page, "<figure"), 0);
  EXPECT_THAT(page, HasSubstr("id=\"ranks\""));
  EXPECT_THAT(page, HasSubstr("&quot;batch_size&quot;: 64"));
}

TEST(ReportHtmlTest, MarksRightAndWrongSamplesAndScalesBars) {
  const std::string page = render_report_html(inputs_of(3, 3));
  // Sample i has label i % 3 and top class i % 3: all right.
  EXPECT_EQ(count(page, "<figure class=\"sample right\""), 3);
  EXPECT_THAT(page, HasSubstr("style=\"width:60.0%\""));
  EXPECT_THAT(page, HasSubstr("style=\"width:30.0%\""));
  EXPECT_THAT(page, HasSubstr("3 test samples, 3 predicted right"));
  ReportPageInputs in = inputs_of(3, 1);
  in.report->mutable_predictions(0)->set_label(2);
  in.report->mutable_predictions(0)->mutable_image()->pop_back();  // the shape no longer fits
  const std::string wrong = render_report_html(in);
  EXPECT_EQ(count(wrong, "<figure class=\"sample wrong\""), 1);
  EXPECT_EQ(count(wrong, "<img"), 0);
  EXPECT_THAT(wrong, HasSubstr("no image: image has 11 bytes (expected channels x height x "
                               "width = 12)"));
}

TEST(ReportHtmlTest, InvalidConfigJsonIsShownAsStored) {
  ReportPageInputs in = inputs_of(2, 0);
  in.run.set_config_json("{not json <x>");
  const std::string page = render_report_html(in);
  EXPECT_THAT(page, HasSubstr("Not valid JSON; shown as stored."));
  EXPECT_THAT(page, HasSubstr("{not json &lt;x&gt;"));
}

// ---- PNG and base64

TEST(ReportHtmlPngTest, ChecksumsMatchKnownVectors) {
  EXPECT_EQ(crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(crc32(""), 0u);
  EXPECT_EQ(adler32("Wikipedia"), 0x11E60398u);
  EXPECT_EQ(adler32(""), 1u);
}

TEST(ReportHtmlPngTest, Base64MatchesRfc4648) {
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  EXPECT_EQ(base64("foob"), "Zm9vYg==");
  EXPECT_EQ(base64("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64(std::string("\xff\xfe\x00", 3)), "//4A");
}

std::uint32_t u32_at(const std::string& s, std::size_t at) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(s[at])) << 24 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(s[at + 1])) << 16 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(s[at + 2])) << 8 |
         static_cast<unsigned char>(s[at + 3]);
}

struct DecodedPng {
  std::uint32_t width = 0, height = 0;
  int colour_type = -1;
  std::string pixels;  // scanlines without their filter bytes
};

// Reads back what encode_png writes: chunks with their CRCs, one IDAT of
// stored deflate blocks with its Adler-32, filter type 0 on every line.
DecodedPng decode(const std::string& png, int samples_per_pixel) {
  DecodedPng out;
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  std::string idat;
  for (std::size_t at = 8; at < png.size();) {
    const std::uint32_t length = u32_at(png, at);
    const std::string type = png.substr(at + 4, 4);
    const std::string data = png.substr(at + 8, length);
    EXPECT_EQ(u32_at(png, at + 8 + length), crc32(png.substr(at + 4, 4 + length))) << type;
    if (type == "IHDR") {
      out.width = u32_at(data, 0);
      out.height = u32_at(data, 4);
      EXPECT_EQ(data[8], 8);
      out.colour_type = data[9];
    } else if (type == "IDAT") {
      idat += data;
    }
    at += 12 + length;
  }
  EXPECT_EQ((static_cast<unsigned char>(idat[0]) * 256 + static_cast<unsigned char>(idat[1])) % 31,
            0);
  std::string raw;
  std::size_t at = 2;
  for (bool last = false; !last;) {
    last = (idat[at] & 1) != 0;
    EXPECT_EQ(idat[at] & 6, 0);  // stored
    const std::size_t length = static_cast<unsigned char>(idat[at + 1]) |
                               static_cast<std::size_t>(static_cast<unsigned char>(idat[at + 2]))
                                   << 8;
    raw += idat.substr(at + 5, length);
    at += 5 + length;
  }
  EXPECT_EQ(u32_at(idat, at), adler32(raw));
  const std::size_t line = 1 + out.width * static_cast<std::size_t>(samples_per_pixel);
  EXPECT_EQ(raw.size(), line * out.height);
  for (std::size_t y = 0; y < out.height; ++y) {
    EXPECT_EQ(raw[y * line], 0);
    out.pixels += raw.substr(y * line + 1, line - 1);
  }
  return out;
}

TEST(ReportHtmlPngTest, EncodesPlanarRgbAsInterleavedPixels) {
  const DecodedPng png = decode(encode_png(tiny_image(), 3, 2, 2), 3);
  EXPECT_EQ(png.width, 2u);
  EXPECT_EQ(png.height, 2u);
  EXPECT_EQ(png.colour_type, 2);
  EXPECT_EQ(png.pixels, std::string("\xff\x00\x00"
                                    "\x00\xff\x00"
                                    "\x00\x00\xff"
                                    "\xff\xff\xff",
                                    12));
}

TEST(ReportHtmlPngTest, GreyscaleAndImagesLargerThanOneStoredBlock) {
  // 1 x 300 x 300: 90,300 bytes of scanlines, two stored blocks.
  std::string grey(300 * 300, '\0');
  for (std::size_t i = 0; i < grey.size(); ++i) grey[i] = static_cast<char>(i % 251);
  const DecodedPng png = decode(encode_png(grey, 1, 300, 300), 1);
  EXPECT_EQ(png.colour_type, 0);
  EXPECT_EQ(png.pixels, grey);
}

TEST(ReportHtmlPngTest, RefusesAShapeThatDoesNotFit) {
  EXPECT_THROW(encode_png("abc", 3, 2, 2), std::invalid_argument);
  EXPECT_THROW(encode_png("", 0, 1, 1), std::invalid_argument);
  try {
    encode_png("abc", 3, 2, 2);
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("image has 3 bytes (expected channels x height x width = 12)"));
  }
}

}  // namespace
}  // namespace xfer::coordinator::coordctl
