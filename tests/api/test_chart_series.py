"""The dashboard's chart columns (static/series.js), run by node: gaps stay gaps, ranges pick their buckets."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SERIES = Path(__file__).resolve().parents[2] / "gateway" / "api" / "static" / "series.js"


def run(tmp_path: Path, expr: str) -> object:
    assert shutil.which("node"), "the chart code is checked with node: apt-get install nodejs"
    script = tmp_path / "check.mjs"
    script.write_text(f"import {{ bucketFor, toColumns }} from {json.dumps(SERIES.as_uri())};\n"
                      f"console.log(JSON.stringify({expr}));\n")
    done = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def raw(ts: float, value: float | None, quality: str = "good") -> dict:
    return {"ts": ts, "value": value, "quality": quality}


def test_a_link_down_sample_breaks_the_line(tmp_path):
    points = [raw(0, 1.0), raw(1, 2.0), raw(2, None, "bad"), raw(3, 4.0)]
    assert run(tmp_path, f"toColumns({json.dumps(points)}, null)") == [[0, 1, 2, 3], [1.0, 2.0, None, 4.0]]


def test_a_stretch_without_samples_is_a_gap_not_a_straight_line(tmp_path):
    points = [raw(t, float(t)) for t in (0, 1, 2, 3)] + [raw(t, float(t)) for t in (60, 61, 62)]
    xs, ys = run(tmp_path, f"toColumns({json.dumps(points)}, null)")
    assert None in ys
    gap = ys.index(None)
    assert xs[gap - 1] == 3 and xs[gap + 1] == 60 and 3 < xs[gap] < 60


def test_one_missing_bucket_is_a_gap_and_a_bad_only_bucket_too(tmp_path):
    buckets = [{"ts": 0, "avg": 1.0}, {"ts": 60, "avg": 2.0}, {"ts": 180, "avg": 3.0}, {"ts": 240, "avg": None}]
    xs, ys = run(tmp_path, f"toColumns({json.dumps(buckets)}, 60)")
    assert ys == [1.0, 2.0, None, 3.0, None]  # 120 s missing; the last bucket held only BAD samples
    assert xs[2] == 120


@pytest.mark.parametrize("span, bucket", [(900, None), (3600, 5), (8 * 3600, 60), (86400, 120)])
def test_ranges_are_drawn_from_raw_samples_or_buckets(tmp_path, span, bucket):
    assert run(tmp_path, f"bucketFor({span})") == bucket
