"""The evidence scripts keep rendering what they measured."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_performance_report_renders_from_its_json(tmp_path):
    out = tmp_path / "performance.md"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_serving.py"), "--from-json",
                        str(ROOT / "docs" / "performance.json"), "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1000:]
    text = out.read_text()
    result = json.loads((ROOT / "docs" / "performance.json").read_text())
    table_rows = [l for l in text.splitlines() if l.startswith("| on |") or l.startswith("| off |")]
    assert len(table_rows) == len(result["triton"]) == 26
    assert "Analytic floor" in text and f"{result['onnx']['floor']:.2f}x" in text
