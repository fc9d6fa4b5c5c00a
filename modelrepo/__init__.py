"""The model repository: one owner for its layout, metadata schema, validation and publishing.

    <repository>/<model-name>/<version>/model.onnx
                                        metadata.json
                                        report/...

Training writes through `publish`; the service reads through `scan`/`verify`. This package is
deliberately light (pydantic, no TensorFlow, no Flask) so both halves can import it.
"""
from modelrepo.schema import Metadata, TensorSpec
from modelrepo.store import (
    METADATA_FILE,
    MODEL_FILE,
    Rejected,
    RepositoryError,
    list_models,
    list_versions,
    newest_version,
    prune,
    publish,
    read_metadata,
    valid_name,
    sha256_file,
    verify,
    version_dir,
)

__all__ = [
    "METADATA_FILE", "MODEL_FILE", "Metadata", "Rejected", "RepositoryError", "TensorSpec",
    "list_models", "list_versions", "newest_version", "prune", "publish",
    "read_metadata", "sha256_file", "valid_name", "verify", "version_dir",
]
