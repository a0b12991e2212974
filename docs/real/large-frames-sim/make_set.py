"""A simulated set of line-camera-like frames: one-channel 8-bit PNG photographs of 512-768 x 640-768
pixels (varying size and aspect), pixel masks, defects of 0.002-0.15 % of the frame (the simulator's
defects keep their pixel size at any frame size: a pit of 11-65 px in a 0.3-0.6 MPixel frame), brightness
and contrast varying from part to part, defect-free frames the largest class (200 of 520). Made from the
simulator's intensity channel at 768 px by the stand-in's cropping (../tiny-defects-sim/make_set.py), with
larger crops; delamination is left out (subsurface, invisible in intensity).

    python make_set.py SIMULATED_DIR OUT_DIR SEED      # writes OUT_DIR/{train,test}/<class>/ (75/25)
"""
import importlib.util
import sys
from pathlib import Path

COUNTS = {"ok": 200, "crack": 80, "scratch": 80, "contamination": 80, "pit": 80}

if __name__ == "__main__":
    spec = importlib.util.spec_from_file_location(
        "tiny_defects_make_set", Path(__file__).resolve().parents[1] / "tiny-defects-sim" / "make_set.py")
    crops = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(crops)
    crops.main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), COUNTS, heights=(512, 768), widths=(640, 768))
