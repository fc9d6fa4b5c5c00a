"""Production images count in every batch: the mixed pipeline's batches hold a fixed share of them
(real tf.data on marked images; TensorFlow is imported, nothing is trained)."""
import numpy as np
import pytest

from training.config import TrainConfig
from training.data import Split

pytestmark = pytest.mark.slow  # imports TensorFlow


@pytest.mark.parametrize("share, own", [(0.25, 8), (0.1, 3), (0.5, 16)])
def test_every_batch_holds_the_same_number_of_production_images(share, own):
    from training.train import _mixed_pipeline

    # Replayed images are all 0, production ones all 1 (few of them: they must be repeated).
    replay = Split(np.zeros((1000, 28, 28, 1), np.float32), np.zeros(1000, np.uint8))
    production = Split(np.ones((40, 28, 28, 1), np.float32), np.full(40, 3, np.uint8))
    config = TrainConfig(batch_size=32, augment=False, production_share=share)
    dataset, steps = _mixed_pipeline(replay, production, config)
    assert steps == 32  # an epoch keeps its length: ceil(1000 / 32) steps
    for images, targets in dataset.take(steps).as_numpy_iterator():
        assert images.shape[0] == 32
        assert int(images.reshape(32, -1).max(1).sum()) == own
        assert int(targets[:, 3].sum()) == own
