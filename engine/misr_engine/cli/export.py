"""`misr export-onnx`: a network with its weights as an ONNX model."""

from __future__ import annotations

import argparse
import sys

from .options import add_model, add_output


def add(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-onnx", help="export a network with its weights to an ONNX model",
        description="Write an ONNX model (opset 17) with dynamic batch, frame-count and spatial axes: "
                    "inputs frames and masks (B,T,H,W) float32 (frames normalised by the scene mean "
                    "and standard deviation, cloudy pixels 0; masks 1 = clear), outputs mean and "
                    "log_scale (B,1,3H,3W). Model name, config, weights SHA-256, engine version and "
                    "scale are in its metadata_props. Run it with `misr super-resolve --backend onnx "
                    "--weights FILE.onnx`.")
    add_model(p, "export")
    add_output(p, "ONNX file to write")
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> None:
    from ..inference.onnx_export import export_onnx
    from ..rasters.outputs import check_output_path

    check_output_path(args.output, [args.weights] if args.weights else [], args.overwrite)
    metadata = export_onnx(args.model, args.weights, args.output)
    print(f"wrote {args.output} ({metadata['model']}, weights sha256 {metadata['weights_sha256'][:12]})",
          file=sys.stderr)
