"""The model repository: one owner for its layout, metadata schema, validation and publishing.

    <repository>/<model-name>/<version>/model.onnx
                                        metadata.json
                                        report/...
                             decisions.json   (an operator's pin or unload, if any)

Training writes through `publish`; the service reads through `candidates`/`verify`; both
resolve "the version a server serves" with `served_version`, and both follow the operators'
decisions kept beside the versions. Every file is read through `read_regular`: a pipe, a
device or an oversized file can never block or flood a reader. Deliberately light (pydantic
and numpy, no TensorFlow, no Flask) so that both halves can import it.
"""
from modelrepo.decisions import DECISIONS_FILE, Decision, Unwritable, decision_stamp, read_decision, record_decision
from modelrepo.locking import locked
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
from modelrepo.reading import MAX_DECISIONS_BYTES, MAX_METADATA_BYTES, MAX_MODEL_BYTES, MAX_REPORT_BYTES, NotRegular, read_regular
from modelrepo.writing import Rejected, prune, publish
from modelrepo.schema import NUMPY_DTYPES, ONNX_DATATYPES, Datatype, Metadata, TensorSpec
from modelrepo.store import (
    candidates,
    list_models,
    list_versions,
    newest_version,
    read_metadata,
    read_report,
    read_verified,
    served_version,
    sha256_file,
    verify,
)

__all__ = [
    "DECISIONS_FILE", "MAX_DECISIONS_BYTES", "MAX_METADATA_BYTES", "MAX_MODEL_BYTES",
    "MAX_REPORT_BYTES", "METADATA_FILE", "MODEL_FILE", "NUMPY_DTYPES", "ONNX_DATATYPES", "REPORT_CARD",
    "REPORT_DIR", "REPORT_IMAGES", "Datatype", "Decision", "Metadata", "NotRegular", "Rejected", "RepositoryError",
    "TensorSpec", "Unwritable", "candidates", "decision_stamp", "inside", "list_models", "list_versions",
    "locked", "newest_version", "parse_version", "prune", "publish", "read_decision", "read_metadata",
    "read_regular", "read_report", "read_verified", "record_decision", "report_file", "served_version",
    "sha256_file", "valid_name", "verify", "version_dir",
]
