"""Command line: ``facesearch ingest|match|verify|delete|export|restore|audit|models|stats|people|
relatives|kinship-train|evaluate|thresholds|calibrate|serve``; each command lives in the module of its concern
(gallery, people, kinship, evaluation, serve) with its options.

User mistakes (a FaceSearchError) print one line to stderr and exit non-zero; only bugs
show a traceback.
"""

from __future__ import annotations

import argparse
import sys

from facesearch.cli import evaluation, gallery, kinship, people, serve
from facesearch.errors import FaceSearchError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facesearch", description="Face similarity search over a ChromaDB gallery.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", help="embedding model (see 'facesearch models'); default $FACESEARCH_MODEL or sface")
    common.add_argument("--detector", help="face detector; default $FACESEARCH_DETECTOR or yunet")
    common.add_argument("--home", help="data folder; default $FACESEARCH_HOME or ./data")
    common.add_argument("--chroma-url", help="use a Chroma server (e.g. http://127.0.0.1:8000) instead of the local database")
    sub = p.add_subparsers(dest="cmd", required=True)
    for module in (gallery, people, kinship, evaluation, serve):
        module.register(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    from facesearch.weights import quiet_tensorflow

    quiet_tensorflow()  # before any command imports TensorFlow (DeepFace models, mtcnn)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FaceSearchError as exc:
        # A file name that is not UTF-8 came in as os.fsdecode's surrogates: shown as
        # its bytes, \xe9, not as the surrogate \udce9.
        text = str(exc).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        print(f"error: {text}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
