"""Embed edgeseg: python examples/sdk_in_15_lines.py [IMAGE_OR_VIDEO] [MODEL.onnx | -] [visible | thermal]."""
import sys
from pathlib import Path

from edgeseg import Segmenter
from edgeseg.io.sources import open_source

source = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parents[1] / "edgeseg/assets/demo_gas_leak.mp4")
model = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None  # None / -: the bundled model of the kind
stream = Segmenter(model, kind=sys.argv[3] if len(sys.argv) > 3 else "visible").stream()  # one per camera / video
for frame in open_source(source):
    result = stream.segment(frame.image)  # a thermal (temporal) model keeps this stream's history
    regions = ", ".join(f"bbox {r.bbox} {r.area_px} px conf {r.max_conf:.2f}" for r in result.regions)
    print(f"frame {frame.index}: {'LEAK ' + regions if result.leak else 'no leak'} "
          f"({sum(result.timings.values()):.1f} ms)")
