"""The course CNN, exactly."""
from training.model import PARAMETERS, build_model


def test_architecture_and_parameter_count():
    model = build_model()
    layers = [(type(layer).__name__, getattr(layer, "filters", None) or getattr(layer, "units", None) or getattr(layer, "rate", None))
              for layer in model.layers]
    assert layers == [
        ("Conv2D", 64), ("MaxPooling2D", None), ("Conv2D", 128), ("Conv2D", 128), ("MaxPooling2D", None),
        ("Conv2D", 256), ("Conv2D", 256), ("MaxPooling2D", None), ("Flatten", None),
        ("Dense", 128), ("Dropout", 0.5), ("Dense", 64), ("Dropout", 0.5), ("Dense", 10),
    ]
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.kernel_size for c in convs] == [(7, 7)] + [(3, 3)] * 4
    assert all(c.padding == "same" and c.activation.__name__ == "relu" for c in convs)
    assert model.layers[-1].activation.__name__ == "softmax"
    assert model.input_shape == (None, 28, 28, 1)
    assert model.count_params() == PARAMETERS == 1_413_834
