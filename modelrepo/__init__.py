"""The model repository: one owner for its layout, metadata schema, validation and publishing.

    <repository>/<model-name>/<version>/model.onnx
                                        metadata.json
                                        report/...

Training writes through `publish`; the service reads through `candidates`/`verify`; both
resolve "the version a server serves" with `served_version`. Deliberately light (pydantic and
numpy, no TensorFlow, no Flask) so that both halves can import it.
"""
from modelrepo.decisions import Decision, Decisions
from modelrepo.paths import (
    METADATA_FILE,
    MODEL_FILE,
    REPORT_CARD,
    REPORT_DIR,
    REPORT_IMAGES,
    RepositoryError,
    inside,
    parse_version,
    report_file,
    valid_name,
    version_dir,
)
from modelrepo.writing import Rejected, locked, prune, publish
from modelrepo.schema import FASHION_MNIST_LABELS, NUMPY_DTYPES, ONNX_DATATYPES, Datatype, Metadata, TensorSpec
from modelrepo.store import (
    candidates,
    list_models,
    list_versions,
    newest_version,
    read_metadata,
    served_version,
    sha256_file,
    verify,
)

__all__ = [
    "FASHION_MNIST_LABELS", "METADATA_FILE", "MODEL_FILE", "NUMPY_DTYPES", "ONNX_DATATYPES", "REPORT_CARD",
    "REPORT_DIR", "REPORT_IMAGES", "Datatype", "Decision", "Decisions", "Metadata", "Rejected", "RepositoryError",
    "TensorSpec", "candidates", "inside", "list_models", "list_versions", "locked", "newest_version",
    "parse_version", "prune", "publish", "read_metadata", "report_file", "served_version", "sha256_file",
    "valid_name", "verify", "version_dir",
]
