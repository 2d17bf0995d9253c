#!/usr/bin/env python3
"""Validate ONNX models with the reference checker: onnx.checker.check_model(path, full_check=True).

Usage: scripts/onnx_check.py MODEL.onnx [MODEL.onnx ...]
Exit status: 0 all valid, 1 a model is invalid, 3 the Python `onnx` package is not installed
(install it with `pip install onnx`).
"""
import sys


def main(paths):
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        import onnx
    except ImportError:
        print("onnx_check: the Python package `onnx` is not installed (pip install onnx)", file=sys.stderr)
        return 3
    status = 0
    for path in paths:
        try:
            # A path (not a loaded model) lets the checker handle models of any size.
            onnx.checker.check_model(path, full_check=True)
            print(f"{path}: ok (onnx {onnx.__version__}, full_check)")
        except Exception as e:  # the checker raises ValidationError, loading can raise others
            print(f"{path}: INVALID: {e}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
