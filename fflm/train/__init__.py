"""Training: the dataset and augmentation, losses, the loop and what any run needs (schedule, checkpoints)."""

import argparse


def weights_tool_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments shared by the `python -m fflm.train.*` tools that turn a weights file into another one
    measured or fitted on training annotations: WEIGHTS, --data, --out (the module docstring's first paragraph
    as description)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("weights")
    ap.add_argument("--data", required=True, help="training annotations (300-W folder, CSV or JSON)")
    ap.add_argument("--out", required=True)
    return ap
